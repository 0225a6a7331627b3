"""Conditional create, update and delete (https://hl7.org/fhir/R4/http.html#ccreate, #cond-update, #cdelete),
and their race-freedom under concurrent identical requests."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, post, put, unique

SYSTEM = "https://cml-registry.eu/fhir/sid/patient"


def _criteria(value: str) -> str:
    return f"identifier={SYSTEM}|{value}"


async def test_conditional_create_with_no_match_creates(client: httpx.AsyncClient) -> None:
    value = unique()
    r = await post(client, "Patient", patient(value), **{"If-None-Exist": _criteria(value)})
    assert r.status_code == 201


async def test_conditional_create_with_one_match_returns_it_without_writing(client: httpx.AsyncClient) -> None:
    value = unique()
    first = parse(await post(client, "Patient", patient(value)))
    r = await post(client, "Patient", patient(value), **{"If-None-Exist": _criteria(value)})
    assert r.status_code == 200
    assert parse(r)["id"] == first["id"]
    assert parse(r)["meta"]["versionId"] == "1"


async def test_conditional_create_with_two_matches_is_412(client: httpx.AsyncClient) -> None:
    value = unique()
    await post(client, "Patient", patient(value))
    await post(client, "Patient", patient(value))
    r = await post(client, "Patient", patient(value), **{"If-None-Exist": _criteria(value)})
    assert r.status_code == 412
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_conditional_create_criteria_sent_as_the_search_url_match_the_same(client: httpx.AsyncClient) -> None:
    """If-None-Exist is "just the query portion of the URL"; clients also send ``Patient?...`` or the whole URL."""
    value = unique()
    first = parse(await post(client, "Patient", patient(value)))
    for criteria in (f"Patient?{_criteria(value)}", f"http://testserver/fhir/Patient?{_criteria(value)}"):
        r = await post(client, "Patient", patient(value), **{"If-None-Exist": criteria})
        assert r.status_code == 200, (criteria, r.text)
        assert parse(r)["id"] == first["id"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(value), "request": {"method": "POST", "url": "Patient",
                                                 "ifNoneExist": f"Patient?{_criteria(value)}"}}]}
    r = await post(client, "", bundle)
    assert r.status_code == 200, r.text
    assert parse(r)["entry"][0]["response"]["status"].startswith("200")


async def test_conditional_create_criteria_searching_another_type_is_400(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()), **{"If-None-Exist": "Observation?code=x"})
    assert r.status_code == 400, r.text
    assert "searches Observation" in parse(r)["issue"][0]["diagnostics"]


async def test_a_criteria_value_holding_a_question_mark_is_a_query(client: httpx.AsyncClient) -> None:
    value = f"a?b{unique()}"
    r = await post(client, "Patient", patient(value), **{"If-None-Exist": f"identifier={SYSTEM}|{value}"})
    assert r.status_code == 201, r.text


async def test_conditional_create_with_invalid_criteria_is_400(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()), **{"If-None-Exist": "birthdate=not-a-date"})
    assert r.status_code == 400


async def test_concurrent_identical_conditional_creates_make_exactly_one(client: httpx.AsyncClient) -> None:
    value = unique()
    headers = {"Content-Type": FHIR_JSON, "If-None-Exist": _criteria(value)}
    payload = body(patient(value))
    responses = await asyncio.gather(*[client.post("/fhir/Patient", content=payload, headers=headers)
                                       for _ in range(12)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 11, statuses
    assert len({parse(r)["id"] for r in responses}) == 1
    found = parse(await client.get(f"/fhir/Patient?{_criteria(value)}"))
    assert len(found["entry"]) == 1


async def test_conditional_update_with_no_match_creates(client: httpx.AsyncClient) -> None:
    value = unique()
    r = await client.put(f"/fhir/Patient?{_criteria(value)}", content=body(patient(value)),
                         headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201


async def test_conditional_update_with_one_match_updates_it(client: httpx.AsyncClient) -> None:
    value = unique()
    first = parse(await post(client, "Patient", patient(value)))
    r = await client.put(f"/fhir/Patient?{_criteria(value)}", content=body(patient(value, gender="male")),
                         headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    assert parse(r)["id"] == first["id"] and parse(r)["meta"]["versionId"] == "2"


async def test_conditional_update_with_two_matches_is_412(client: httpx.AsyncClient) -> None:
    value = unique()
    await post(client, "Patient", patient(value))
    await post(client, "Patient", patient(value))
    r = await client.put(f"/fhir/Patient?{_criteria(value)}", content=body(patient(value)),
                         headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 412


async def test_conditional_update_with_conflicting_id_is_400(client: httpx.AsyncClient) -> None:
    value = unique()
    await post(client, "Patient", patient(value))
    r = await client.put(f"/fhir/Patient?{_criteria(value)}", content=body(patient(value, id="other-id")),
                         headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400


async def test_concurrent_identical_conditional_updates_make_exactly_one(client: httpx.AsyncClient) -> None:
    value = unique()
    payload = body(patient(value))
    responses = await asyncio.gather(*[
        client.put(f"/fhir/Patient?{_criteria(value)}", content=payload, headers={"Content-Type": FHIR_JSON})
        for _ in range(8)])
    assert all(r.status_code in (200, 201) for r in responses)
    found = parse(await client.get(f"/fhir/Patient?{_criteria(value)}"))
    assert len(found["entry"]) == 1


async def test_conditional_delete_with_one_match_deletes_it(client: httpx.AsyncClient) -> None:
    value = unique()
    first = parse(await post(client, "Patient", patient(value)))
    r = await client.delete(f"/fhir/Patient?{_criteria(value)}")
    assert r.status_code == 204
    assert (await client.get(f"/fhir/Patient/{first['id']}")).status_code == 410


async def test_conditional_delete_with_no_match_is_204(client: httpx.AsyncClient) -> None:
    r = await client.delete(f"/fhir/Patient?{_criteria(unique())}")
    assert r.status_code == 204


async def test_conditional_delete_with_two_matches_is_412(client: httpx.AsyncClient) -> None:
    value = unique()
    await post(client, "Patient", patient(value))
    await post(client, "Patient", patient(value))
    r = await client.delete(f"/fhir/Patient?{_criteria(value)}")
    assert r.status_code == 412


async def test_conditional_create_after_delete_creates_again(client: httpx.AsyncClient) -> None:
    value = unique()
    first = parse(await post(client, "Patient", patient(value), **{"If-None-Exist": _criteria(value)}))
    await client.delete(f"/fhir/Patient/{first['id']}")
    r = await post(client, "Patient", patient(value), **{"If-None-Exist": _criteria(value)})
    assert r.status_code == 201
    assert parse(r)["id"] != first["id"]


async def test_put_without_criteria_on_type_is_405(client: httpx.AsyncClient) -> None:
    r = await put(client, "Patient", patient(unique()))
    assert r.status_code == 405
