"""Prognostic risk scores of CML at diagnosis, as defined by the IFP data contract ("Risk scores").

Sokal (Blood 1984), Hasford/Euro (JNCI 1998), EUTOS (Blood 2011) and ELTS (Leukemia 2016). Inputs are the
baseline values at diagnosis: ``age`` (years), ``spleen`` (cm below costal margin), ``platelets`` (10^9/L),
``blasts``, ``eosinophils``, ``basophils`` (% in peripheral blood). Results are published as
``ifp-risk-score`` Observations (valueQuantity + interpretation low/intermediate/high from ``ifp-response``).

Hasford and EUTOS are linear with integer-ish thresholds (780, 1480, 87), so they are computed in ``Decimal``:
in binary floating point a score that is exactly 780 can come out as 780.0000000001 and change group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

Number = int | float | Decimal
INPUTS = ("age", "spleen", "platelets", "blasts", "eosinophils", "basophils")
RISK_CODE_SYSTEM = "https://cml-registry.eu/fhir/CodeSystem/ifp-response"


@dataclass(frozen=True)
class RiskScore:
    """A computed score and its risk group (``low``, ``intermediate`` or ``high``)."""

    name: str  # sokal | hasford | eutos | elts
    value: float
    group: str


def _inputs(baseline: Mapping[str, Number | None], names: tuple[str, ...]) -> dict[str, Decimal]:
    missing = [n for n in names if baseline.get(n) is None]
    if missing:
        raise ValueError(f"missing baseline values: {', '.join(missing)}")
    # str() first: Decimal(0.1) would keep the float's binary error.
    return {n: Decimal(str(baseline[n])) for n in names}


def sokal(baseline: Mapping[str, Number | None]) -> RiskScore:
    """exp(0.0116(age-43.4) + 0.0345(spleen-7.51) + 0.188((platelets/700)^2 - 0.563)
    + 0.0887(blasts-2.10)); low < 0.8 <= intermediate <= 1.2 < high."""
    v = {k: float(x) for k, x in _inputs(baseline, ("age", "spleen", "platelets", "blasts")).items()}
    score = math.exp(0.0116 * (v["age"] - 43.4) + 0.0345 * (v["spleen"] - 7.51)
                     + 0.188 * ((v["platelets"] / 700) ** 2 - 0.563) + 0.0887 * (v["blasts"] - 2.10))
    group = "low" if score < 0.8 else "intermediate" if score <= 1.2 else "high"
    return RiskScore("sokal", score, group)


def hasford(baseline: Mapping[str, Number | None]) -> RiskScore:
    """1000 x (0.6666[age>=50] + 0.0420 spleen + 0.0584 blasts + 0.0413 eosinophils + 0.2039[basophils>=3]
    + 1.0956[platelets>=1500]); low <= 780 < intermediate <= 1480 < high."""
    v = _inputs(baseline, INPUTS)
    score = 1000 * (
        (Decimal("0.6666") if v["age"] >= 50 else 0)
        + Decimal("0.0420") * v["spleen"]
        + Decimal("0.0584") * v["blasts"]
        + Decimal("0.0413") * v["eosinophils"]
        + (Decimal("0.2039") if v["basophils"] >= 3 else 0)
        + (Decimal("1.0956") if v["platelets"] >= 1500 else 0)
    )
    group = "low" if score <= 780 else "intermediate" if score <= 1480 else "high"
    return RiskScore("hasford", float(score), group)


def eutos(baseline: Mapping[str, Number | None]) -> RiskScore:
    """7 x basophils + 4 x spleen; low <= 87 < high."""
    v = _inputs(baseline, ("basophils", "spleen"))
    score = 7 * v["basophils"] + 4 * v["spleen"]
    return RiskScore("eutos", float(score), "low" if score <= 87 else "high")


def elts(baseline: Mapping[str, Number | None]) -> RiskScore:
    """0.0025(age/10)^3 + 0.0615 spleen + 0.1052 blasts + 0.4104 (platelets/1000)^-0.5;
    low <= 1.5680 < intermediate <= 2.2185 < high."""
    v = {k: float(x) for k, x in _inputs(baseline, ("age", "spleen", "blasts", "platelets")).items()}
    if v["platelets"] <= 0:
        raise ValueError("platelets must be positive for ELTS")
    score = (0.0025 * (v["age"] / 10) ** 3 + 0.0615 * v["spleen"] + 0.1052 * v["blasts"]
             + 0.4104 * (v["platelets"] / 1000) ** -0.5)
    group = "low" if score <= 1.5680 else "intermediate" if score <= 2.2185 else "high"
    return RiskScore("elts", score, group)


SCORES = {"sokal": sokal, "hasford": hasford, "eutos": eutos, "elts": elts}


def all_scores(baseline: Mapping[str, Number | None]) -> dict[str, RiskScore]:
    """Every score whose inputs are all present (a missing input skips the score, it does not fail)."""
    out: dict[str, RiskScore] = {}
    for name, compute in SCORES.items():
        try:
            out[name] = compute(baseline)
        except ValueError:
            continue
    return out


def age_in_years(birth_date: date, at: date) -> int:
    """Completed years of age at ``at`` (the date of diagnosis for the scores)."""
    return at.year - birth_date.year - ((at.month, at.day) < (birth_date.month, birth_date.day))
