"""The registry report as a FHIR R4 MeasureReport (https://hl7.org/fhir/R4/measurereport.html) and as CSV.

data-contract.md, "The registry report": status ``complete``, type ``summary``, one ``group`` per section with
``group.code.coding[0]`` = ifp-concepts + section code, counts in ``population[0].count`` (code
``initial-population``), scores in ``measureScore``. For counting strata ``stratum.measureScore`` is the
percentage of all registered patients (unit ``%``); for ``age-at-diagnosis`` and ``imatinib-exposure`` it is
the median (UCUM ``a``, ``mo``, ``mg/d``). Two-dimensional strata (clinical profile per group) use
``stratum.component``. Filters are echoed as ``period`` and, for a cohort, ``subject`` = the Group.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fhir_server.contract import BASE, UCUM
from fhir_server.reports.model import RegistryReport, Section, Stratifier, Stratum
from fhir_server.reports.pipeline import CONCEPTS

MEASURE = f"{BASE}/Measure/registry-report"
POPULATION = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                          "code": "initial-population"}]}
FILTER_EXTENSION = f"{BASE}/StructureDefinition/registry-report-filter"
CSV_COLUMNS = ("group", "stratifier", "stratum", "count", "percent", "score", "unit")


def _concept(code: str, system: str | None = None, display: str | None = None) -> dict[str, Any]:
    """A CodeableConcept whose ``text`` is the code itself (strata keys are read by programs)."""
    out: dict[str, Any] = {"text": code}
    if system:
        coding: dict[str, Any] = {"system": system, "code": code}
        if display:
            coding["display"] = display
        out["coding"] = [coding]
    return out


def _quantity(value: Decimal, unit: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if unit:
        out.update({"unit": unit, "system": UCUM, "code": unit})
    return out


def _population(count: int) -> list[dict[str, Any]]:
    return [{"code": POPULATION, "count": count}]


def _stratum(stratum: Stratum, unit: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if stratum.components:
        out["component"] = [{"code": _concept(dim, CONCEPTS), "value": _concept(value)}
                            for dim, value in stratum.components]
    else:
        out["value"] = _concept(stratum.key, stratum.system, stratum.display)
    if stratum.count is not None:
        out["population"] = _population(stratum.count)
    value = stratum.percent if stratum.percent is not None else stratum.score
    if value is not None:
        out["measureScore"] = _quantity(value, "%" if stratum.percent is not None else unit)
    return out


def _stratifier(stratifier: Stratifier) -> dict[str, Any]:
    score_unit = None if stratifier.unit == "%" else stratifier.unit
    return {"code": [_concept(stratifier.code, CONCEPTS)],
            "stratum": [_stratum(s, score_unit) for s in stratifier.strata]}


def _group(section: Section) -> dict[str, Any]:
    out: dict[str, Any] = {"code": {"coding": [{"system": CONCEPTS, "code": section.code,
                                                "display": section.display}]}}
    if section.count is not None:
        out["population"] = _population(section.count)
    if section.score is not None:
        out["measureScore"] = _quantity(section.score, section.score_unit)
    if section.stratifiers:
        out["stratifier"] = [_stratifier(s) for s in section.stratifiers]
    return out


def _filter_extensions(report: RegistryReport) -> list[dict[str, Any]]:
    f = report.filters
    pairs = [("country", c) for c in sorted(f.countries)] + [("center", c) for c in sorted(f.centers)]
    return [{"url": FILTER_EXTENSION, "extension": [{"url": "name", "valueCode": name},
                                                    {"url": "value", "valueString": value}]}
            for name, value in pairs]


def to_measure_report(report: RegistryReport, now: datetime | None = None) -> dict[str, Any]:
    """The MeasureReport resource of a computed report."""
    now = now or datetime.now(UTC)
    period: dict[str, str] = {}
    if report.period_start:
        period["start"] = report.period_start.isoformat()
    if report.period_end:
        period["end"] = report.period_end.isoformat()
    if not period:
        period = {"start": now.date().isoformat(), "end": now.date().isoformat()}
    out: dict[str, Any] = {"resourceType": "MeasureReport"}
    extensions = _filter_extensions(report)
    if extensions:
        out["extension"] = extensions
    out.update({"status": "complete", "type": "summary", "measure": MEASURE})
    if report.filters.cohort:
        out["subject"] = {"reference": f"Group/{report.filters.cohort}"}
    out.update({"date": now.isoformat(timespec="seconds"), "period": period,
                "group": [_group(s) for s in report.sections]})
    return out


def _text(value: Decimal | int | None) -> str:
    return "" if value is None else str(value)


def to_csv(report: RegistryReport) -> str:
    """One row per section and per stratum: group, stratifier, stratum, count, percent, score, unit."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for section in report.sections:
        writer.writerow([section.code, "", "", _text(section.count), "", _text(section.score),
                         section.score_unit or ""])
        for stratifier in section.stratifiers:
            unit = "" if stratifier.unit == "%" else stratifier.unit or ""
            for s in stratifier.strata:
                writer.writerow([section.code, stratifier.code, s.key, _text(s.count), _text(s.percent),
                                 _text(s.score), unit if s.score is not None else ""])
    return buffer.getvalue()
