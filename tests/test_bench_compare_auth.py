"""The one-run comparison of ``bench/search.py --compare-auth`` and ``bench/ingest.py --compare-auth`` (issue #11
item 14: what tokens and the audit trail cost, both servers timed in the same run): its arithmetic. Pure."""

from __future__ import annotations

import argparse

import pytest

from bench.common import AuthCost, add_auth_argument, guarded_label, percent_over


def test_the_cost_is_the_guarded_time_over_the_plain_time_in_percent() -> None:
    assert percent_over(11.0, 10.0) == pytest.approx(10.0)
    assert percent_over(9.0, 10.0) == pytest.approx(-10.0)


def test_the_cost_of_each_percentile_compares_the_same_percentile_of_both_servers() -> None:
    guarded = [float(ms) for ms in range(1, 101)]  # p50 50.5, p95 95 (the sample at 0.95 of the range)
    plain = [ms / 2 for ms in guarded]
    result = AuthCost.of(guarded, plain)
    assert result.guarded == (pytest.approx(50.5), 95.0)
    assert result.plain == (pytest.approx(25.25), 47.5)
    assert result.cost == (pytest.approx(100.0), pytest.approx(100.0))


def test_a_rate_is_compared_the_other_way_round() -> None:
    guarded_rate, plain_rate = 900.0, 1000.0  # resources/s: fewer is the cost
    assert percent_over(plain_rate, guarded_rate) == pytest.approx(100 / 9)


def test_audit_off_compares_the_tokens_alone() -> None:
    parser = argparse.ArgumentParser()
    add_auth_argument(parser)
    assert guarded_label(parser.parse_args(["--compare-auth"])) == "tokens + audit trail"
    assert guarded_label(parser.parse_args(["--compare-auth", "--audit", "off"])) == "tokens alone"
