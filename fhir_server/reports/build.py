"""From the aggregation's ``$facet`` result to the sections of the registry report (data-contract.md, "The
registry report"). Only small per-section lists are handled here; every count and median comes from MongoDB.

Conventions (also in the MeasureReport's description):

* counting strata: ``count`` = patients, ``percent`` = of all registered patients (in the filters), as Tab. 1;
* ``age-at-diagnosis``: group score = median age (years), stratifier ``range`` with strata ``min``/``max``;
* ``failure-vs-toxicity``: stratifier ``group`` (failure/toxicity), and the clinical profile per group as
  two-dimensional stratifiers ``phase-at-diagnosis`` and ``sokal-group`` (components ``group`` + value);
* ``imatinib-exposure``: stratifiers ``duration-months`` and ``daily-dose-at-stop``, strata failure/toxicity,
  ``count`` = patients with a value, ``score`` = median.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_server.contract import NOT_RECORDED, PHASES
from fhir_server.reports.model import Filters, RegistryReport, Section, Stratifier, Stratum, percent, score
from fhir_server.reports.pipeline import (
    CONCEPTS,
    DECISION_SYSTEM,
    PHASE_SYSTEM,
    REASON_SYSTEM,
    RESPONSE_SYSTEM,
    run_report_pipeline,
)
from fhir_server.reports.terminology import ReportCodes, report_codes
from fhir_server.storage.store import ResourceStore

GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
COUNTRY_SYSTEM = "urn:iso:std:iso:3166"
PROSPECTIVE = {"included": "Included in a prospective study", "never-included": "Never included",
               "unknown": "Unknown"}
RISK_GROUPS = ("low", "intermediate", "high")

Counts = dict[Any, int]


def _counts(facet: list[dict[str, Any]]) -> Counts:
    return {row["_id"]: int(row["n"]) for row in facet}


def _strata(keys: list[str], counts: Counts, total: int, system: str | None = None,
            displays: dict[str, str] | None = None) -> tuple[Stratum, ...]:
    return tuple(Stratum(k, counts.get(k, 0), percent(counts.get(k, 0), total), system=system,
                         display=(displays or {}).get(k)) for k in keys)


def _present_first(fixed: list[str], counts: Counts) -> list[str]:
    """The fixed keys (always shown, zero or not), then any other key found in the data."""
    return fixed + sorted(k for k in counts if k not in fixed and k is not None)


def _patients(facets: dict[str, Any], total: int) -> Section:
    sex = _counts(facets["sex"])
    country = _counts(facets["country"])
    by_size = sorted(country, key=lambda k: (-country[k], k))
    return Section("patients", "Registered patients", count=total, stratifiers=(
        Stratifier("sex", _strata(_present_first(["male", "female"], sex), sex, total, GENDER_SYSTEM), "%"),
        Stratifier("country", _strata(by_size, country, total, COUNTRY_SYSTEM), "%"),
    ))


def _age(facets: dict[str, Any]) -> Section:
    stats = facets["age"][0] if facets["age"] else {}
    return Section("age-at-diagnosis", "Age at diagnosis (years)", count=int(stats.get("n", 0)),
                   score=score(stats.get("median")), score_unit="a", stratifiers=(
                       Stratifier("range", (Stratum("min", score=score(stats.get("min"))),
                                            Stratum("max", score=score(stats.get("max")))), "a"),))


def _simple(code: str, display: str, keys: list[str], counts: Counts, total: int, system: str | None = None,
            displays: dict[str, str] | None = None) -> Section:
    return Section(code, display, count=total,
                   stratifiers=(Stratifier(code, _strata(keys, counts, total, system, displays), "%"),))


def _crossed(code: str, facet: list[dict[str, Any]], groups: tuple[str, ...], values: list[str],
             total: int, system: str) -> Stratifier:
    counts = {(row["_id"]["g"], row["_id"].get("v")): int(row["n"]) for row in facet}
    extra = sorted({v for _, v in counts if v not in values and v is not None})
    strata = tuple(
        Stratum(f"{g}|{v}", counts.get((g, v), 0), percent(counts.get((g, v), 0), total), system=system,
                components=(("group", g), (code, v)))
        for g in groups for v in values + extra)
    return Stratifier(code, strata, "%")


def _failure_vs_toxicity(facets: dict[str, Any], codes: ReportCodes, total: int) -> Section:
    groups = codes.groups()
    counts = _counts(facets["group"])
    return Section("failure-vs-toxicity", "Failure vs toxicity", count=total, stratifiers=(
        Stratifier("group", _strata(list(groups), counts, total, REASON_SYSTEM), "%"),
        _crossed("phase-at-diagnosis", facets["phase"], groups, list(PHASES), total, PHASE_SYSTEM),
        _crossed("sokal-group", facets["sokal"], groups, list(RISK_GROUPS), total, RESPONSE_SYSTEM),
    ))


def _medians(code: str, facet: list[dict[str, Any]], groups: tuple[str, ...], unit: str) -> Stratifier:
    rows = {row["_id"]: row for row in facet}
    return Stratifier(code, tuple(
        Stratum(g, int(rows.get(g, {}).get("n", 0)), score=score(rows.get(g, {}).get("median")),
                system=REASON_SYSTEM) for g in groups), unit)


def _exposure(facets: dict[str, Any], codes: ReportCodes, total: int) -> Section:
    groups = codes.groups()
    return Section("imatinib-exposure", "Imatinib dose and duration until failure or toxicity", count=total,
                   stratifiers=(_medians("duration-months", facets["months"], groups, "mo"),
                                _medians("daily-dose-at-stop", facets["dose"], groups, "mg/d")))


def _decisions(facets: dict[str, Any], codes: ReportCodes, total: int) -> Section:
    counts = _counts(facets["decision"])
    keys = [c.code for c in codes.decisions]
    keys += sorted(k for k in counts if k not in keys)  # not-recorded (no decision), or codes of other versions
    displays = {c.code: c.display for c in codes.decisions} | {NOT_RECORDED: "Not recorded"}
    return _simple("decision-after-imatinib", "Decision after imatinib", keys, counts, total, DECISION_SYSTEM,
                   displays)


def _reasons(facets: dict[str, Any], codes: ReportCodes, total: int) -> Section:
    counts = _counts(facets["reason"])
    keys = [c.code for c in codes.reasons] + [NOT_RECORDED]
    keys += sorted(k for k in counts if k not in keys)
    displays = {c.code: c.display for c in codes.reasons} | {NOT_RECORDED: "Not recorded"}
    return _simple("registration-reason", "Reason for registration (Tab. 1)", keys, counts, total,
                   REASON_SYSTEM, displays)


def _sections(facets: dict[str, Any], codes: ReportCodes, total: int) -> tuple[Section, ...]:
    prospective = _counts(facets["prospective"])
    months = {month: n for month, n in _counts(facets["month"]).items() if month}  # year-only dates: no month
    return (
        _patients(facets, total),
        _age(facets),
        _simple("prospective-study", "Prospective study at failure", list(PROSPECTIVE), prospective, total,
                None, PROSPECTIVE),
        _reasons(facets, codes, total),
        _failure_vs_toxicity(facets, codes, total),
        _exposure(facets, codes, total),
        _decisions(facets, codes, total),
        _simple("registrations-by-month", "Patients registered by month (Fig. 1)", sorted(months), months,
                total),
    )


async def registry_report(ctx: Any, store: ResourceStore, filters: Filters) -> RegistryReport:
    """Compute the report (one aggregation) for the patients ``ctx`` may read, within ``filters``."""
    codes = await report_codes(ctx, store)
    facets = await run_report_pipeline(ctx, store, filters, codes)
    if not facets:
        facets = {name: [] for name in ("sex", "country", "prospective", "reason", "group", "decision", "month",
                                        "total", "regRange", "age", "months", "dose", "phase", "sokal")}
    total = int(facets["total"][0]["n"]) if facets["total"] else 0
    seen = facets["regRange"][0] if facets["regRange"] else {}
    start = filters.period_start or _date(seen.get("lo"))
    end = filters.period_end or _date(seen.get("hi"))
    return RegistryReport(total, start, end, filters, _sections(facets, codes, total))


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value and len(value) == 10 else None
    except ValueError:
        return None


__all__ = ["CONCEPTS", "registry_report"]
