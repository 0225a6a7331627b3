"""Test helpers for the registry report: load synthetic patients over HTTP, compute the expected report
independently from ``PatientFacts`` (plain Python, no code shared with ``fhir_server.reports``), and flatten a
MeasureReport into ``{(group, stratifier, stratum): (count, percent, score)}`` for exact comparison."""

from __future__ import annotations

import csv
import io
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from fhir_server import fhirjson
from fhir_server.api.report_page import report_router
from fhir_server.contract import DECISIONS, REASONS
from fhir_server.storage.mongod import free_port
from tests.synthetic import PatientFacts, registry_cohort

CONCEPTS = "https://cml-registry.eu/fhir/CodeSystem/ifp-concepts"
Key = tuple[str, str, str]
Numbers = tuple[int | None, Decimal | None, Decimal | None]
LEAVES = list(REASONS)
GROUPS = ["failure", "toxicity"]


async def submit(client: httpx.AsyncClient, bundle: dict[str, Any]) -> str:
    """POST one patient's transaction Bundle (``synthetic.build_bundle``); the id of its Patient."""
    response = await client.post("/fhir", content=fhirjson.dumps(bundle),
                                 headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    location = fhirjson.loads(response.content)["entry"][1]["response"]["location"]
    return str(location.split("Patient/")[1].split("/")[0])


async def load_cohort(client: httpx.AsyncClient, count: int, seed: int) -> list[tuple[PatientFacts, str]]:
    """POST ``count`` synthetic patients (one transaction each); their facts and Patient ids."""
    return [(facts, await submit(client, bundle)) for bundle, facts in registry_cohort(count, seed)]


async def first_stored(client: httpx.AsyncClient, patient_id: str) -> date:
    """The day (UTC) ``Patient/{patient_id}`` was first stored: its version 1's ``meta.lastUpdated``, read over
    HTTP (the registration date of a patient with neither a registration Observation nor a stopped imatinib
    period, data contract v0.2)."""
    response = await client.get(f"/fhir/Patient/{patient_id}/_history/1")
    assert response.status_code == 200, response.text
    stamp = datetime.fromisoformat(fhirjson.loads(response.content)["meta"]["lastUpdated"])
    return stamp.astimezone(UTC).date()


def pct(n: int, total: int) -> Decimal:
    return (Decimal(100 * n) / Decimal(total)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def two(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _counted(out: dict[Key, Numbers], group: str, stratifier: str, keys: Iterable[str],
             counts: Counter[Any], total: int) -> None:
    for key in keys:
        out[(group, stratifier, key)] = (counts[key], pct(counts[key], total), None)


def expected_report(facts: list[PatientFacts]) -> dict[Key, Numbers]:
    """Every number the report must contain for these patients."""
    total = len(facts)
    out: dict[Key, Numbers] = {}
    for group in ("patients", "prospective-study", "registration-reason", "failure-vs-toxicity",
                  "imatinib-exposure", "decision-after-imatinib", "registrations-by-month"):
        out[(group, "", "")] = (total, None, None)
    sex = Counter(f.sex for f in facts)
    _counted(out, "patients", "sex", sorted({"male", "female", *sex}), sex, total)
    country = Counter(f.country for f in facts)
    _counted(out, "patients", "country", country, country, total)
    ages = [f.age_at_diagnosis for f in facts]
    out[("age-at-diagnosis", "", "")] = (len(ages), None, two(statistics.median(ages)) if ages else None)
    out[("age-at-diagnosis", "range", "min")] = (None, None, two(min(ages)) if ages else None)
    out[("age-at-diagnosis", "range", "max")] = (None, None, two(max(ages)) if ages else None)
    _counted(out, "prospective-study", "prospective-study", ["included", "never-included", "unknown"],
             Counter(f.prospective for f in facts), total)
    _counted(out, "registration-reason", "registration-reason", [*LEAVES, "not-recorded"],
             Counter(f.reason for f in facts), total)
    _counted(out, "failure-vs-toxicity", "group", GROUPS, Counter(f.group for f in facts), total)
    phases = Counter(f"{f.group}|{f.phase_at_diagnosis}" for f in facts if f.group)
    _counted(out, "failure-vs-toxicity", "phase-at-diagnosis",
             [f"{g}|{p}" for g in GROUPS for p in ("chronic", "accelerated", "blast")], phases, total)
    sokal = Counter(f"{f.group}|{f.sokal_group or 'unknown'}" for f in facts if f.group)
    risk = ["low", "intermediate", "high"] + (["unknown"] if any(k.endswith("|unknown") for k in sokal) else [])
    _counted(out, "failure-vs-toxicity", "sokal-group", [f"{g}|{r}" for g in GROUPS for r in risk], sokal, total)
    for group in GROUPS:
        months = [f.imatinib_months for f in facts if f.group == group and f.imatinib_months is not None]
        doses = [f.dose_at_stop for f in facts if f.group == group and f.dose_at_stop is not None]
        out[("imatinib-exposure", "duration-months", group)] = (
            len(months), None, two(statistics.median(months)) if months else None)
        out[("imatinib-exposure", "daily-dose-at-stop", group)] = (
            len(doses), None, two(statistics.median(doses)) if doses else None)
    decisions = Counter(f.decision or "not-recorded" for f in facts)
    keys = list(DECISIONS) + (["not-recorded"] if decisions["not-recorded"] else [])
    _counted(out, "decision-after-imatinib", "decision-after-imatinib", keys, decisions, total)
    months_reg = Counter(f.registration_month for f in facts)
    _counted(out, "registrations-by-month", "registrations-by-month", months_reg, months_reg, total)
    return out


def csv_numbers(text: str) -> dict[Key, Numbers]:
    """The CSV report's numbers keyed like ``flatten``'s (empty cells are None)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and list(rows[0]) == ["group", "stratifier", "stratum", "count", "percent", "score", "unit"]
    out: dict[Key, Numbers] = {}
    for row in rows:
        key = (row["group"], row["stratifier"], row["stratum"])
        assert key not in out, key
        out[key] = (int(row["count"]) if row["count"] else None, Decimal(row["percent"]) if row["percent"] else None,
                    Decimal(row["score"]) if row["score"] else None)
    return out


def table_row(page: str, label: str) -> tuple[int, Decimal]:
    """Count and percentage of the ``/report`` page's table row labelled ``label``."""
    match = re.search(rf"<td>{re.escape(label)}</td><td class=\"n\">(\d+)</td><td class=\"n\">([\d.]+)</td>", page)
    assert match, label
    return int(match.group(1)), Decimal(match.group(2))


def _numbers(element: dict[str, Any]) -> Numbers:
    population = element.get("population") or [{}]
    count = population[0].get("count")
    score = element.get("measureScore")
    if score is None:
        return count, None, None
    value = Decimal(str(score["value"]))
    return (count, value, None) if score.get("code") == "%" else (count, None, value)


def _stratum_key(stratum: dict[str, Any]) -> str:
    if "component" in stratum:
        return "|".join(c["value"]["text"] for c in stratum["component"])
    value = stratum["value"]
    codings = value.get("coding") or []
    return str(codings[0]["code"] if codings else value["text"])


def flatten(report: dict[str, Any]) -> dict[Key, Numbers]:
    """A MeasureReport's numbers keyed by (group code, stratifier code, stratum code)."""
    out: dict[Key, Numbers] = {}
    for group in report["group"]:
        code = group["code"]["coding"][0]
        assert code["system"] == CONCEPTS
        out[(code["code"], "", "")] = _numbers(group)
        for stratifier in group.get("stratifier", []):
            name = stratifier["code"][0]["coding"][0]["code"]
            for stratum in stratifier["stratum"]:
                key = (code["code"], name, _stratum_key(stratum))
                assert key not in out, key
                out[key] = _numbers(stratum)
    return out


def with_page(app: FastAPI) -> FastAPI:
    """``app`` with the ``/report`` page."""
    if not any(getattr(r, "path", None) == "/report" for r in app.routes):
        app.include_router(report_router)
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread with its own event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
