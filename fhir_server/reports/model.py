"""The registry report as plain data, before it becomes a MeasureReport, CSV or HTML.

Mirrors data-contract.md, "The registry report": one ``Group`` per section (``code`` from ifp-concepts), each
with optional stratifiers whose strata carry a count, a percentage of all registered patients and/or a
score (a median). Counting sections have percentages; ``age-at-diagnosis`` and ``imatinib-exposure`` have
scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal


def percent(count: int, total: int) -> Decimal | None:
    """``count`` as a percentage of ``total`` with one decimal, rounded half up (Tab. 1 style)."""
    if total <= 0:
        return None
    return (Decimal(100 * count) / Decimal(total)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def score(value: float | None, places: str = "0.01") -> Decimal | None:
    """A median as a decimal with two places (half up)."""
    if value is None:
        return None
    return Decimal(repr(float(value))).quantize(Decimal(places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Stratum:
    """One stratum: ``key`` is its code (``male``, ``FR``, ``no-chr-3m``, ``2007-03``, ``min`` ...);
    ``components`` its dimensions when the stratifier crosses two (``(("group", "failure"), ("phase",
    "chronic"))``)."""

    key: str
    count: int | None = None
    percent: Decimal | None = None
    score: Decimal | None = None
    system: str | None = None  # code system of ``key`` when it is a code
    display: str | None = None
    components: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stratifier:
    code: str
    strata: tuple[Stratum, ...]
    unit: str | None = None  # UCUM unit of the strata's scores (``%`` for percentages)

    def stratum(self, key: str) -> Stratum | None:
        return next((s for s in self.strata if s.key == key), None)


@dataclass(frozen=True)
class Section:
    """A MeasureReport.group."""

    code: str
    display: str
    count: int | None = None
    score: Decimal | None = None
    score_unit: str | None = None
    stratifiers: tuple[Stratifier, ...] = ()

    def stratifier(self, code: str) -> Stratifier:
        return next(s for s in self.stratifiers if s.code == code)


@dataclass(frozen=True)
class Filters:
    """The report's filters (operation parameters and page query parameters, see ``filters.py``).

    ``patient_ids``: restrict to these Patient ids (a cohort Group's members), None = no restriction.
    """

    period_start: date | None = None
    period_end: date | None = None
    countries: frozenset[str] = frozenset()
    centers: frozenset[str] = frozenset()
    cohort: str | None = None
    patient_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class RegistryReport:
    total: int
    period_start: date | None
    period_end: date | None
    filters: Filters
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def section(self, code: str) -> Section:
        return next(s for s in self.sections if s.code == code)
