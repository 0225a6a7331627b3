"""``Patient/[id]/$everything`` over HTTP (https://hl7.org/fhir/R4/patient-operation-everything.html).

Two patients of the data set of ``test_parameters_http``: ``pa`` (managed by ``poi``, which is part of ``net``)
and ``pb``. Hand-derived: ``pa``'s compartment is reg-a, reg-old, lab-a (Observation.subject) and ima-a
(MedicationStatement.subject); what they refer to outside it is Organization/poi (Patient.managingOrganization);
``net`` is only referred to by ``poi``, which is not in the compartment, so it is not part of the result.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from tests.conftest import parse
from tests.search_http.conftest import fresh, link, store
from tests.search_http.test_parameters_http import ALL, LAB_A

PA = ["Patient/pa", "MedicationStatement/ima-a", "Observation/lab-a", "Observation/reg-a", "Observation/reg-old",
      "Organization/poi"]


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services,
               search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    await store(http, *ALL)
    return http


async def everything(client: httpx.AsyncClient, url: str, params: dict[str, str] | None = None,
                     **headers: str) -> dict[str, Any]:
    r = await client.get(url, params=params, headers=headers)
    assert r.status_code == 200, r.text
    bundle = parse(r)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle  # type: ignore[no-any-return]


def refs(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] != "outcome" and (mode is None or e["search"]["mode"] == mode)]


async def walk(client: httpx.AsyncClient, url: str) -> list[str]:
    bundle = await everything(client, url)
    found = refs(bundle)
    while (nxt := link(bundle, "next")) is not None:
        bundle = await everything(client, nxt)
        found += refs(bundle)
    return found


async def test_everything_is_the_patient_its_compartment_and_what_they_refer_to(data: httpx.AsyncClient) -> None:
    bundle = await everything(data, "/fhir/Patient/pa/$everything")
    assert refs(bundle) == PA  # patient first, then by type and id, referenced resources last
    assert refs(bundle, "include") == ["Organization/poi"]
    assert bundle["total"] == 6


async def test_everything_of_another_patient_has_only_its_own_record(data: httpx.AsyncClient) -> None:
    bundle = await everything(data, "/fhir/Patient/pb/$everything")
    assert refs(bundle) == ["Patient/pb", "MedicationStatement/ima-b", "Observation/lab-b", "Observation/reg-b",
                            "Organization/poi"]


async def test_everything_type_filter(data: httpx.AsyncClient) -> None:
    assert refs(await everything(data, "/fhir/Patient/pa/$everything?_type=Observation")) == [
        "Observation/lab-a", "Observation/reg-a", "Observation/reg-old"]
    assert refs(await everything(data, "/fhir/Patient/pa/$everything?_type=Organization,Patient")) == [
        "Patient/pa", "Organization/poi"]


async def test_everything_since(data: httpx.AsyncClient, search_db: AsyncDatabase) -> None:
    """Resources were stored in the order of ``ALL``: since reg-old, that is reg-old, lab-a and ima-a."""
    doc = await search_db["Observation"].find_one({"_id": "reg-old"})
    assert doc is not None
    bundle = await everything(data, "/fhir/Patient/pa/$everything", {"_since": doc["lastUpdated"].isoformat()})
    assert refs(bundle) == ["MedicationStatement/ima-a", "Observation/lab-a", "Observation/reg-old"]


async def test_everything_pages_and_stays_correct_while_the_record_grows(data: httpx.AsyncClient) -> None:
    """Keys are (patient, compartment by type and id, referenced): a resource added before the boundary of the
    page read is not returned later (no repeat, no shift), one added after it is."""
    first = await everything(data, "/fhir/Patient/pa/$everything", {"_count": "2"})
    assert refs(first) == ["Patient/pa", "MedicationStatement/ima-a"]
    await store(data, {**LAB_A, "id": "lab-z"},
                {"resourceType": "MedicationStatement", "id": "ima-0", "status": "active",
                 "medicationCodeableConcept": {"text": "imatinib"}, "subject": {"reference": "Patient/pa"}})
    try:
        rest: list[str] = []
        bundle = first
        while (nxt := link(bundle, "next")) is not None:
            bundle = await everything(data, nxt)
            assert len(refs(bundle)) <= 2
            rest += refs(bundle)
        assert rest == ["Observation/lab-a", "Observation/lab-z", "Observation/reg-a", "Observation/reg-old",
                        "Organization/poi"]
    finally:
        await data.delete("/fhir/Observation/lab-z")
        await data.delete("/fhir/MedicationStatement/ima-0")


async def test_everything_of_an_unknown_or_deleted_patient(data: httpx.AsyncClient) -> None:
    assert (await data.get("/fhir/Patient/nobody/$everything")).status_code == 404
    await store(data, {"resourceType": "Patient", "id": "gone"})
    await data.delete("/fhir/Patient/gone")
    assert (await data.get("/fhir/Patient/gone/$everything")).status_code == 410


async def test_everything_only_at_patient_instance_level_with_get(data: httpx.AsyncClient) -> None:
    assert (await data.get("/fhir/Observation/lab-a/$everything")).status_code in (404, 405)
    assert (await data.post("/fhir/Patient/pa/$everything")).status_code == 405


async def test_everything_parameters(data: httpx.AsyncClient) -> None:
    assert (await data.get("/fhir/Patient/pa/$everything", params={"_since": "yesterday"})).status_code == 400
    assert (await data.get("/fhir/Patient/pa/$everything?_count=0")).status_code == 400
    lenient = await everything(data, "/fhir/Patient/pa/$everything?unknown=2007")
    assert refs(lenient) == PA
    assert any(e["search"]["mode"] == "outcome" for e in lenient["entry"])
    strict = await data.get("/fhir/Patient/pa/$everything?unknown=2007", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    for name in ("start", "end"):
        wrong = await data.get("/fhir/Patient/pa/$everything", params={name: "last year"})
        assert wrong.status_code == 400
        assert parse(wrong)["issue"][0]["expression"] == [name]


# start/end: care dates (hand-derived from the data set: ima-a taken 2001-03-01..2006-12-31, reg-old
# 2006-12-31T22:00Z, reg-a 2007-02-15, lab-a 2007-06-01; the Patient and what in-range resources refer to stay)
@pytest.mark.parametrize(("period", "expected"), [
    ({"start": "2007"}, ["Patient/pa", "Observation/lab-a", "Observation/reg-a", "Organization/poi"]),
    ({"end": "2006"}, ["Patient/pa", "MedicationStatement/ima-a", "Observation/reg-old", "Organization/poi"]),
    ({"start": "2007-03", "end": "2007-12"}, ["Patient/pa", "Observation/lab-a", "Organization/poi"]),
    ({"start": "2005", "end": "2005"}, ["Patient/pa", "MedicationStatement/ima-a", "Organization/poi"]),
    ({"start": "1990", "end": "2030"}, PA),
])
async def test_everything_start_and_end_keep_the_care_of_the_period(data: httpx.AsyncClient,
                                                                    period: dict[str, str],
                                                                    expected: list[str]) -> None:
    bundle = await everything(data, "/fhir/Patient/pa/$everything", params=period)
    assert refs(bundle) == expected
    self_link = str(link(bundle, "self"))
    assert all(f"{name}={value}" in self_link for name, value in period.items())


async def test_everything_start_and_end_keep_what_has_no_care_date(data: httpx.AsyncClient) -> None:
    """An Observation without its date, and a Condition (no care date parameter), cannot be placed outside."""
    await store(data, {"resourceType": "Observation", "id": "undated", "status": "final", "code": {"text": "x"},
                       "subject": {"reference": "Patient/pa"}},
                {"resourceType": "Condition", "id": "cml", "code": {"text": "CML"},
                 "subject": {"reference": "Patient/pa"}, "onsetDateTime": "1999-01-01"})
    try:
        found = refs(await everything(data, "/fhir/Patient/pa/$everything", params={"start": "2030"}))
        assert found == ["Patient/pa", "Condition/cml", "Observation/undated", "Organization/poi"]
    finally:
        await data.delete("/fhir/Observation/undated")
        await data.delete("/fhir/Condition/cml")


async def test_everything_does_not_follow_references_to_other_patients(data: httpx.AsyncClient) -> None:
    """A Group of pa and pb is in both compartments; pb's record is not part of pa's $everything."""
    await store(data, {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                       "member": [{"entity": {"reference": "Patient/pa"}}, {"entity": {"reference": "Patient/pb"}}]},
                {"resourceType": "Observation", "id": "lab-link", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": "Patient/pa"}, "focus": [{"reference": "Patient/pb"}]})
    try:
        found = refs(await everything(data, "/fhir/Patient/pa/$everything"))
        assert "Group/g" in found and "Observation/lab-link" in found
        assert "Patient/pb" not in found
    finally:
        await data.delete("/fhir/Group/g")
        await data.delete("/fhir/Observation/lab-link")
