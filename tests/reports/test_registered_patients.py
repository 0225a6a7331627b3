"""Every registered patient counts (data contract v0.2, "Definitions"): a Patient stored without a registration
Observation is registered all the same - in the patients count, in Tab. 1 as ``not-recorded`` (unless its stopped
imatinib period records the reason), in Fig. 1 at the end of its last stopped imatinib period or else on the day
it was first stored - in the MeasureReport, the CSV, the ``/report`` page, through the period filter and in a
``Group/$cohort``."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.registry.form_a import DosePeriod, PatientRecord, build_bundle
from fhir_server.services import Services
from fhir_server.storage.documents import HISTORY, instant
from tests.reports.helpers import (
    csv_numbers,
    expected_report,
    first_stored,
    flatten,
    load_cohort,
    pct,
    submit,
    table_row,
)
from tests.synthetic import PatientFacts, facts_of, synthetic_record

N, SEED = 12, 1984
PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"
JSON = {"Content-Type": "application/fhir+json"}
Submitted = tuple[PatientFacts, str]


@dataclass(frozen=True)
class Registry:
    """A small synthetic cohort, and three patients the centers sent without a registration Observation."""

    cohort: list[Submitted]
    stopped: Submitted  # reason not recorded, imatinib stopped: registered at the stop
    active: Submitted  # reason not recorded, still on imatinib: registered the day it was first stored
    status_reason: Submitted  # the stopped period's statusReason records the reason (toxicity)

    def facts(self, *, without: str | None = None) -> list[PatientFacts]:
        extra = [s for s in (self.stopped, self.active, self.status_reason) if s[1] != without]
        return [f for f, pid in self.cohort if pid != without] + [f for f, _ in extra]


def _without_registration(index: int, start: date, end: date | None, reason: str | None = None) -> PatientRecord:
    """Synthetic patient ``index`` as sent without a registration Observation, on imatinib from ``start`` to
    ``end`` (None: still on it), the reason for stopping recorded in the statusReason when given."""
    record = synthetic_record(index, random.Random(index))
    return replace(record, registration_observation=False, stop_reason=reason, responses=(),
                   diagnosis_date=start - (record.periods[0].start - record.diagnosis_date),
                   periods=(DosePeriod(start, end, Decimal(400)),))


async def _send(client: httpx.AsyncClient, record: PatientRecord) -> Submitted:
    """Submit ``record`` as its transaction Bundle; its ground truth (first-stored day read back) and id."""
    pid = await submit(client, build_bundle(record))
    return facts_of(record, first_stored=await first_stored(client, pid)), pid


@pytest.fixture
async def registry(client: httpx.AsyncClient, registry_client: httpx.AsyncClient, services: Services,
                   empty_db: None) -> Registry:
    """The three are submitted to the registry server (rule table enforced): such Bundles are conformant."""
    return Registry(
        cohort=await load_cohort(client, N, SEED),
        stopped=await _send(registry_client, _without_registration(9001, date(2003, 1, 10), date(2004, 6, 15))),
        active=await _send(registry_client, _without_registration(9002, date(2006, 3, 1), None)),
        status_reason=await _send(registry_client, _without_registration(9003, date(2003, 5, 2),
                                                                         date(2004, 9, 20), "toxicity")),
    )


async def _report(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/fhir/$registry-report", params=params)
    assert response.status_code == 200, response.text
    return fhirjson.loads(response.content)  # type: ignore[no-any-return]


async def test_patients_without_a_registration_observation_count_in_every_number(
        client: httpx.AsyncClient, registry: Registry) -> None:
    facts = registry.facts()
    numbers = flatten(await _report(client))
    assert numbers == expected_report(facts)
    total = N + 3
    assert numbers[("patients", "", "")][0] == total
    not_recorded = sum(f.reason == "not-recorded" for f, _ in registry.cohort) + 2
    assert numbers[("registration-reason", "registration-reason", "not-recorded")][:2] == (
        not_recorded, pct(not_recorded, total))
    toxicity = sum(f.reason == "toxicity" for f, _ in registry.cohort) + 1
    assert numbers[("registration-reason", "registration-reason", "toxicity")][0] == toxicity
    by_month = {stratum: n for (group, _, stratum), (n, _, _) in numbers.items()
                if group == "registrations-by-month" and stratum}
    assert registry.stopped[0].registration_month == "2004-06"  # the end of the stopped imatinib period
    assert registry.status_reason[0].registration_month == "2004-09"
    assert by_month["2004-06"] == by_month["2004-09"] == 1
    first_day = await first_stored(client, registry.active[1])
    assert registry.active[0].registration_date == first_day  # stored today: no other patient that month
    assert by_month[first_day.strftime("%Y-%m")] == 1


async def test_the_csv_counts_them(client: httpx.AsyncClient, registry: Registry) -> None:
    response = await client.get("/fhir/$registry-report", params={"_format": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    numbers = csv_numbers(response.text)
    assert numbers == expected_report(registry.facts())
    assert numbers[("patients", "", "")][0] == N + 3


async def test_the_report_page_counts_them(page_client: httpx.AsyncClient, registry: Registry) -> None:
    facts = registry.facts()
    page = (await page_client.get("/report")).text
    assert f"Registered patients<b>{len(facts)}</b>" in page
    not_recorded = sum(f.reason == "not-recorded" for f in facts)
    assert table_row(page, "Not recorded") == (not_recorded, pct(not_recorded, len(facts)))
    in_2004 = [f for f in facts if f.registration_date.year == 2004]  # registered at their imatinib stop
    assert {f.pseudonym for f in in_2004} == {registry.stopped[0].pseudonym, registry.status_reason[0].pseudonym}
    page = (await page_client.get("/report", params={"period-start": "2004", "period-end": "2004"})).text
    assert f"Registered patients<b>{len(in_2004)}</b>" in page
    for label, reason in (("Not recorded", "not-recorded"), ("Toxicity (leading to discontinuation)", "toxicity")):
        count = sum(f.reason == reason for f in in_2004)
        assert table_row(page, label) == (count, pct(count, len(in_2004)))


@pytest.mark.parametrize("which", ["stopped", "active", "status_reason"])
async def test_the_period_filter_applies_to_the_fallback_registration_date(
        client: httpx.AsyncClient, registry: Registry, which: str) -> None:
    facts, _ = getattr(registry, which)
    day = facts.registration_date.isoformat()
    numbers = flatten(await _report(client, **{"period-start": day, "period-end": day}))
    expected = [f for f in registry.facts() if f.registration_date == facts.registration_date]
    assert facts in expected
    assert numbers == expected_report(expected)


async def test_a_cohort_of_them_is_reported(client: httpx.AsyncClient, registry: Registry) -> None:
    members = [registry.stopped, registry.active, registry.status_reason]
    criteria = "Patient?identifier=" + ",".join(f"{PATIENT_SYSTEM}|{f.pseudonym}" for f, _ in members)
    body = {"resourceType": "Parameters", "parameter": [{"name": "criteria", "valueString": criteria}]}
    created = await client.post("/fhir/Group/$cohort", content=fhirjson.dumps(body), headers=JSON)
    assert created.status_code == 201, created.text
    group = fhirjson.loads(created.content)
    assert {m["entity"]["reference"] for m in group["member"]} == {f"Patient/{pid}" for _, pid in members}
    numbers = flatten(await _report(client, cohort=group["id"]))
    assert numbers == expected_report([f for f, _ in members])
    assert numbers[("registration-reason", "registration-reason", "not-recorded")][0] == 2


async def test_the_first_stored_date_is_the_first_versions(client: httpx.AsyncClient, db: AsyncDatabase,
                                                           registry: Registry) -> None:
    """A Patient first stored long ago (say, migrated with its history) and updated since is registered on the
    day of its version 1, not of its current version."""
    facts, pid = registry.active
    long_ago = datetime(2003, 2, 1, 23, 30, tzinfo=UTC)
    await db[HISTORY].update_one({"_id": f"Patient/{pid}/1"}, {"$set": {
        "lastUpdated": long_ago, "resource.meta.lastUpdated": instant(long_ago)}})
    patient = fhirjson.loads((await client.get(f"/fhir/Patient/{pid}")).content)
    updated = await client.put(f"/fhir/Patient/{pid}", content=fhirjson.dumps({**patient, "active": True}),
                               headers=JSON)
    assert updated.status_code == 200, updated.text
    assert fhirjson.loads(updated.content)["meta"]["versionId"] == "2"
    assert await first_stored(client, pid) == long_ago.date()
    moved = replace(facts, registration_date=long_ago.date())
    others = [f for f in registry.facts() if f != facts]
    assert flatten(await _report(client)) == expected_report([*others, moved])


async def test_the_reason_in_the_stopped_periods_status_reason_counts(client: httpx.AsyncClient,
                                                                     registry: Registry) -> None:
    """Without a registration Observation, the ifp-registration-reason code of the last stopped imatinib period's
    statusReason is the reason (profile ifp-imatinib), in whichever statusReason it is; a statusReason with the
    SNOMED CT stop reason alone records no registration reason."""
    facts, pid = registry.status_reason
    found = fhirjson.loads((await client.get("/fhir/MedicationStatement", params={
        "subject": f"Patient/{pid}", "status": "stopped"})).content)
    statement = found["entry"][0]["resource"]
    snomed, reason = statement["statusReason"][0]["coding"]
    statement.pop("meta")  # the plain server: one statusReason per coding, not the profile's shape
    for status_reasons, expected in (([{"coding": [snomed]}, {"coding": [reason]}], facts),
                                     ([{"coding": [snomed]}], replace(facts, reason="not-recorded", group=None))):
        response = await client.put(f"/fhir/MedicationStatement/{statement['id']}", headers=JSON,
                                    content=fhirjson.dumps({**statement, "statusReason": status_reasons}))
        assert response.status_code == 200, response.text
        others = [f for f in registry.facts() if f != facts]
        assert flatten(await _report(client)) == expected_report([*others, expected])


async def test_a_deleted_patient_is_not_registered(client: httpx.AsyncClient, registry: Registry) -> None:
    _, pid = registry.stopped
    response = await client.delete(f"/fhir/Patient/{pid}")
    assert response.status_code in (200, 204), response.text
    assert flatten(await _report(client)) == expected_report(registry.facts(without=pid))
