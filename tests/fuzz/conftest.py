"""Hypothesis budgets for the fuzz tests: ``ci`` (the default, bounded: the fuzz tests take about a minute on two
cores) and ``long`` (``make fuzz``, ``HYPOTHESIS_PROFILE=long``). No deadline: the machines are shared and noisy,
and a slow example is not a failure here (a 5xx, a changed round trip or an unnamed element is).

``ci`` draws the same examples on every run (``derandomize``, as Hypothesis's own ``ci`` profile): ``make test``
decides whether a change lands, and an example no one chose, drawn at random in one run, must not refuse an
unrelated change (it did once: a generator's own slip, ``test_strategies.py``). Exploring is ``make fuzz``'s job,
randomized with 50 times the examples."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
           "print_blob": True}
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
