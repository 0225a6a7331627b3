"""Conditional patch (https://hl7.org/fhir/R4/http.html#patch: ``PATCH [base]/[type]?[search parameters]``): the
one match is patched, no match is 404, several are 412; also as a transaction entry."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, post, unique

JSON_PATCH = "application/json-patch+json"
SYSTEM = "https://cml-registry.eu/fhir/sid/patient"
ACTIVATE = [{"op": "add", "path": "/active", "value": True}]


async def stored(client: httpx.AsyncClient, pseudonym: str) -> dict[str, Any]:
    created = await post(client, "Patient", patient(pseudonym))
    assert created.status_code == 201, created.text
    return dict(parse(created))


async def send(client: httpx.AsyncClient, url: str, document: Any) -> httpx.Response:
    return await client.patch(f"/fhir/{url}", content=body(document), headers={"Content-Type": JSON_PATCH})


async def test_conditional_patch_with_one_match_patches_it(client: httpx.AsyncClient) -> None:
    pseudonym = unique("P-")
    created = await stored(client, pseudonym)
    response = await send(client, f"Patient?identifier={SYSTEM}|{pseudonym}", ACTIVATE)
    assert response.status_code == 200, response.text
    assert parse(response)["id"] == created["id"] and parse(response)["meta"]["versionId"] == "2"
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["active"] is True


async def test_conditional_patch_with_no_match_is_404(client: httpx.AsyncClient) -> None:
    response = await send(client, f"Patient?identifier={SYSTEM}|{unique('none-')}", ACTIVATE)
    assert response.status_code == 404
    assert parse(response)["resourceType"] == "OperationOutcome"


async def test_conditional_patch_with_two_matches_is_412(client: httpx.AsyncClient) -> None:
    family = unique("Fam")
    first = await stored(client, unique("P-"))
    second = await stored(client, unique("P-"))
    for created in (first, second):
        assert (await send(client, f"Patient/{created['id']}",
                           [{"op": "add", "path": "/name", "value": [{"family": family}]}])).status_code == 200
    response = await send(client, f"Patient?family={family}", ACTIVATE)
    assert response.status_code == 412
    assert "active" not in parse(await client.get(f"/fhir/Patient/{first['id']}"))


async def test_conditional_patch_in_a_transaction(client: httpx.AsyncClient) -> None:
    pseudonym = unique("P-")
    created = await stored(client, pseudonym)
    operation = {"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                               {"name": "path", "valueString": "Patient"},
                                               {"name": "name", "valueString": "active"},
                                               {"name": "value", "valueBoolean": True}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Parameters", "parameter": [operation]},
         "request": {"method": "PATCH", "url": f"Patient?identifier={SYSTEM}|{pseudonym}"}}]}
    response = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    assert parse(response)["entry"][0]["response"]["status"] == "200 OK"
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["active"] is True
    missing = {**bundle, "entry": [{**bundle["entry"][0], "request": {
        "method": "PATCH", "url": f"Patient?identifier={SYSTEM}|{unique('none-')}"}}]}
    failed = await client.post("/fhir", content=body(missing), headers={"Content-Type": FHIR_JSON})
    assert failed.status_code == 404
