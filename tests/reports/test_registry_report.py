"""``$registry-report``: every number checked against the ground truth of 60 synthetic patients
(data-contract.md, "The registry report"), with and without filters, as JSON and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import httpx
import pytest

from fhir_server import fhirjson
from fhir_server.services import Services
from tests.reports.helpers import expected_report, flatten, load_cohort
from tests.synthetic import PatientFacts

N, SEED = 60, 1984
GROUP_CODES = ["patients", "age-at-diagnosis", "prospective-study", "registration-reason", "failure-vs-toxicity",
               "imatinib-exposure", "decision-after-imatinib", "registrations-by-month"]


@pytest.fixture
async def cohort(client: httpx.AsyncClient, services: Services, empty_db: None) -> list[tuple[PatientFacts, str]]:
    return await load_cohort(client, N, SEED)


async def _report(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/fhir/$registry-report", params=params)
    assert response.status_code == 200, response.text
    return fhirjson.loads(response.content)  # type: ignore[no-any-return]


async def test_every_number_of_the_unfiltered_report(client: httpx.AsyncClient,
                                                     cohort: list[tuple[PatientFacts, str]]) -> None:
    facts = [f for f, _ in cohort]
    # the reason not recorded, in both forms: with a registration Observation (dataAbsentReason) and without
    assert {f.registration_observation for f in facts if f.reason == "not-recorded"} == {True, False}
    report = await _report(client)
    assert report["resourceType"] == "MeasureReport"
    assert (report["status"], report["type"]) == ("complete", "summary")
    assert [g["code"]["coding"][0]["code"] for g in report["group"]] == GROUP_CODES
    assert report["period"] == {"start": min(f.registration_date for f in facts).isoformat(),
                                "end": max(f.registration_date for f in facts).isoformat()}
    assert report["date"]
    assert flatten(report) == expected_report(facts)


async def test_resubmitting_changes_nothing(client: httpx.AsyncClient,
                                            cohort: list[tuple[PatientFacts, str]]) -> None:
    await load_cohort(client, 10, SEED)  # the same first 10 patients again: conditional creates match
    assert flatten(await _report(client)) == expected_report([f for f, _ in cohort])


@pytest.mark.parametrize(("params", "keep"), [
    ({"period-start": "2006", "period-end": "2006"}, lambda f: f.registration_date.year == 2006),
    ({"period-start": "2006-03-15"}, lambda f: f.registration_date >= date(2006, 3, 15)),
    ({"period-end": "2005-11"}, lambda f: f.registration_date <= date(2005, 11, 30)),
    ({"country": "FR"}, lambda f: f.country == "FR"),
    ({"country": "de,il"}, lambda f: f.country in ("DE", "IL")),
    ({"center": "FR-POI"}, lambda f: f.center == "FR-POI"),
    ({"country": "FR", "period-start": "2007-01-01"},
     lambda f: f.country == "FR" and f.registration_date >= date(2007, 1, 1)),
])
async def test_filters(client: httpx.AsyncClient, cohort: list[tuple[PatientFacts, str]],
                       params: dict[str, str], keep: Any) -> None:
    facts = [f for f, _ in cohort if keep(f)]
    assert 0 < len(facts) < len(cohort)
    report = await _report(client, **params)
    assert flatten(report) == expected_report(facts)
    if "period-start" in params:
        assert report["period"]["start"] == params["period-start"] + "-01-01"[len(params["period-start"]) - 4:]


async def test_cohort_filter(client: httpx.AsyncClient, cohort: list[tuple[PatientFacts, str]]) -> None:
    members = cohort[5:25]
    group = {"resourceType": "Group", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}} for _, pid in members]}
    created = await client.post("/fhir/Group", content=fhirjson.dumps(group),
                                headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    group_id = fhirjson.loads(created.content)["id"]
    report = await _report(client, cohort=group_id, country="FR")
    assert report["subject"] == {"reference": f"Group/{group_id}"}
    assert flatten(report) == expected_report([f for f, _ in members if f.country == "FR"])
    missing = await client.get("/fhir/$registry-report", params={"cohort": "no-such-group"})
    assert missing.status_code == 404


async def test_csv(client: httpx.AsyncClient, cohort: list[tuple[PatientFacts, str]]) -> None:
    facts = [f for f, _ in cohort]
    response = await client.get("/fhir/$registry-report", params={"_format": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["group", "stratifier", "stratum", "count", "percent", "score", "unit"]
    expected = expected_report(facts)
    seen = {(r["group"], r["stratifier"], r["stratum"]): r for r in rows}
    assert set(seen) == set(expected)
    for key, (count, percent, score) in expected.items():
        row = seen[key]
        assert row["count"] == ("" if count is None else str(count)), key
        assert row["percent"] == ("" if percent is None else str(percent)), key
        assert row["score"] == ("" if score is None else str(score)), key


@pytest.mark.parametrize("params", [{"period-start": "2007-13"}, {"period-end": "yesterday"},
                                    {"period-start": "2007", "period-end": "2006"}, {"country": "France"},
                                    {"center": "poitiers!"}, {"cohort": "a b"}])
async def test_bad_filters_are_400(client: httpx.AsyncClient, services: Services, params: dict[str, str]) -> None:
    response = await client.get("/fhir/$registry-report", params=params)
    assert response.status_code == 400
    assert fhirjson.loads(response.content)["resourceType"] == "OperationOutcome"


async def test_empty_registry(client: httpx.AsyncClient, services: Services, empty_db: None) -> None:
    report = await _report(client)
    assert flatten(report)[("patients", "", "")] == (0, None, None)
    assert report["period"]["start"]


async def test_versioned_references_count(client: httpx.AsyncClient, services: Services, empty_db: None) -> None:
    """A resource may refer to its patient (and a patient to its center) with ``Type/id/_history/n``: the patient
    is counted all the same, as searching by ``subject=Patient/id`` finds the resource."""
    cohort = await load_cohort(client, 3, SEED)
    before = flatten(await _report(client))
    for resource_type, element in (("Observation", "subject"), ("MedicationStatement", "subject"),
                                   ("Condition", "subject"), ("Patient", "managingOrganization")):
        found = fhirjson.loads((await client.get(f"/fhir/{resource_type}", params={"_count": "1000"})).content)
        for entry in found.get("entry", []):
            resource = entry["resource"]
            reference = resource[element]["reference"]
            if "/_history/" not in reference:
                resource[element]["reference"] = f"{reference}/_history/1"
            response = await client.put(f"/fhir/{resource_type}/{resource['id']}", content=fhirjson.dumps(resource),
                                        headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text
    assert len(cohort) == 3
    assert flatten(await _report(client)) == before


async def test_a_withdrawn_registration_leaves_its_patient_registered(client: httpx.AsyncClient,
                                                                      services: Services, empty_db: None) -> None:
    """A registration a center withdrew (``status: entered-in-error``) no longer counts, but its patient is still
    registered (data contract v0.2, "Definitions"): the reason is then the one recorded in the stopped imatinib
    period's ``statusReason``, the registration date that period's end (here the same as the withdrawn one's)."""
    cohort = await load_cohort(client, 4, SEED)
    withdrawn_patient = cohort[0][1]
    assert cohort[0][0].reason != "not-recorded"
    found = fhirjson.loads((await client.get("/fhir/Observation", params={
        "subject": f"Patient/{withdrawn_patient}",
        "code": "https://cml-registry.eu/fhir/CodeSystem/ifp-concepts|registration-reason"})).content)
    for entry in found["entry"]:
        resource = {**entry["resource"], "status": "entered-in-error"}
        response = await client.put(f"/fhir/Observation/{resource['id']}", content=fhirjson.dumps(resource),
                                    headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 200, response.text
    assert flatten(await _report(client)) == expected_report([f for f, _ in cohort])


async def test_year_only_registration_date_has_no_month_stratum(client: httpx.AsyncClient, services: Services,
                                                                empty_db: None) -> None:
    """``registrations-by-month`` strata are ``YYYY-MM``: a registration dated by its year alone still counts as
    a registered patient but in no month."""
    cohort = await load_cohort(client, 3, SEED)
    found = fhirjson.loads((await client.get("/fhir/Observation", params={
        "subject": f"Patient/{cohort[0][1]}",
        "code": "https://cml-registry.eu/fhir/CodeSystem/ifp-concepts|registration-reason"})).content)
    registration = {**found["entry"][0]["resource"], "effectiveDateTime": "2001"}
    response = await client.put(f"/fhir/Observation/{registration['id']}", content=fhirjson.dumps(registration),
                                headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    numbers = flatten(await _report(client))
    months = {stratum for group, _, stratum in numbers if group == "registrations-by-month" and stratum}
    assert months and all(len(m) == 7 and m[4] == "-" for m in months)
    assert sum(numbers[("registrations-by-month", s, m)][0] for (g, s, m) in numbers
               if g == "registrations-by-month" and m) == 2
    assert numbers[("patients", "", "")][0] == 3
