"""The reliability suite's read-back (``reliability/workload.py``) sees what it is there to see: a Bundle stored
whole, one stored in part, one not stored, a resource stored twice, a reference to the wrong patient. The suite's
scenarios themselves run with ``make reliability`` (processes killed, mongods started: not in the test suite)."""

from __future__ import annotations

from typing import Any

import httpx

from reliability.workload import bundles, read_back
from tests.conftest import BASE, FHIR_JSON, body, parse


async def _transaction(client: httpx.AsyncClient, bundle: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


async def test_read_back_tells_complete_partial_absent_duplicated_and_misreferenced_bundles(
        client: httpx.AsyncClient, empty_db: None) -> None:
    whole, split, missing = bundles(3, seed=5)
    stored = await _transaction(client, whole)
    await _transaction(client, {**split, "entry": split["entry"][:3]})  # center, patient, diagnosis only
    patient_id = stored["entry"][1]["response"]["location"].split("/")[-3]
    observation = next(e["resource"] for e in whole["entry"] if e["resource"]["resourceType"] == "Observation")
    duplicate = {**observation, "subject": {"reference": f"Patient/{patient_id}"}}  # a second copy, rightly linked
    assert (await client.post("/fhir/Observation", content=body(duplicate),
                              headers={"Content-Type": FHIR_JSON})).status_code == 201
    other_patient = parse(await client.get("/fhir/Patient", params={
        "identifier": split["entry"][1]["resource"]["identifier"][0]["value"]}))["entry"][0]["resource"]["id"]
    condition_id = stored["entry"][2]["response"]["location"].split("/")[-3]
    condition = parse(await client.get(f"/fhir/Condition/{condition_id}"))
    assert (await client.put(f"/fhir/Condition/{condition_id}", content=body(
        {**condition, "subject": {"reference": f"Patient/{other_patient}"}}),
        headers={"Content-Type": FHIR_JSON})).status_code == 200

    result = await read_back(BASE, [whole, split, missing], http=client)

    assert (result.complete, result.partial, result.absent) == (1, 1, 1)
    assert result.duplicates == 1
    assert result.wrong_references == 1, result.problems  # the diagnosis names the other Bundle's patient
    assert not result.sound
