"""Observation/$lastn (https://hl7.org/fhir/R4/observation-operation-lastn.html): the latest ``max``
Observations of each patient and code, computed in MongoDB."""

from __future__ import annotations

import httpx

from tests.conftest import parse, post, unique

LOINC = "http://loinc.org"


async def _patient(client: httpx.AsyncClient) -> str:
    r = await post(client, "Patient", {"resourceType": "Patient"})
    return f"Patient/{parse(r)['id']}"


async def _observation(client: httpx.AsyncClient, patient: str, code: str, when: str | None, value: float) -> str:
    resource = {"resourceType": "Observation", "status": "final", "subject": {"reference": patient},
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "%"}}
    if when:
        resource["effectiveDateTime"] = when
    r = await post(client, "Observation", resource)
    assert r.status_code == 201, r.text
    return str(parse(r)["id"])


async def _lastn(client: httpx.AsyncClient, **params: str) -> list[str]:
    r = await client.get("/fhir/Observation/$lastn", params=params)
    assert r.status_code == 200, r.text
    bundle = parse(r)
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


async def test_lastn_gives_the_latest_value_of_every_patient_for_a_code(client: httpx.AsyncClient) -> None:
    code, other = unique("bcr-"), unique("other-")
    first, second = await _patient(client), await _patient(client)
    await _observation(client, first, code, "2023-01-10", 1.2)
    latest_first = await _observation(client, first, code, "2024-03-01", 0.1)
    await _observation(client, first, code, None, 9.9)  # no date: never the latest
    latest_second = await _observation(client, second, code, "2022-07-15T10:00:00Z", 0.5)
    await _observation(client, second, code, "2022-07-15T09:00:00Z", 0.7)
    await _observation(client, second, other, "2025-01-01", 3.0)  # another code

    found = await _lastn(client, code=f"{LOINC}|{code}")
    assert sorted(found) == sorted([latest_first, latest_second])


async def test_lastn_max_and_patient_narrow_the_groups(client: httpx.AsyncClient) -> None:
    code, other = unique("bcr-"), unique("other-")
    patient = await _patient(client)
    old = await _observation(client, patient, code, "2020-01-01", 2.0)
    new = await _observation(client, patient, code, "2021-01-01", 1.0)
    newest = await _observation(client, patient, code, "2022-01-01", 0.5)
    single = await _observation(client, patient, other, "2019-01-01", 4.0)
    assert await _lastn(client, patient=patient, code=f"{code},{other}", max="2") in (
        [newest, new, single], [single, newest, new])
    assert await _lastn(client, patient=patient, code=code, max="3") == [newest, new, old]


async def test_lastn_refuses_a_bad_max_and_an_unknown_criterion(client: httpx.AsyncClient) -> None:
    for params in ({"max": "0"}, {"max": "many"}, {"no-such-parameter": "1"}):
        r = await client.get("/fhir/Observation/$lastn", params=params)
        assert r.status_code == 400, (params, r.text)
