"""Hypothesis budgets for the fuzz tests: ``ci`` (the default, bounded: the fuzz tests take about a minute on two
cores) and ``long`` (``make fuzz``, ``HYPOTHESIS_PROFILE=long``). No deadline: the machines are shared and noisy,
and a slow example is not a failure here (a 5xx, a changed round trip or an unnamed element is)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
           "print_blob": True}
settings.register_profile("ci", max_examples=40, derandomize=False, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
