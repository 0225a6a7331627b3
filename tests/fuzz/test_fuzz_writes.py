"""Property-based fuzzing of the write interactions (http.html#create, #update, bundle.html#transaction) with
resources generated from the R4 StructureDefinitions (``strategies.py``), in plain-FHIR mode (the ``client``
fixture: the registry's rule table off).

Properties: no answer is a 5xx; every valid resource is stored as sent, byte for byte once the server's own
fields are set aside; every invalid one is a 4xx OperationOutcome naming the broken element, and stores nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import fhirjson
from tests.conftest import FHIR_JSON
from tests.fuzz.checks import (
    assert_names_element,
    assert_not_server_error,
    canonical,
    without_server_fields,
)
from tests.fuzz.strategies import Mutation, mutations, resources

HEADERS = {"Content-Type": FHIR_JSON}


async def _assert_stored_as_sent(client: httpx.AsyncClient, location: str, sent: dict[str, Any]) -> None:
    read = await client.get(location)
    assert read.status_code == 200, read.text[:2000]
    assert canonical(without_server_fields(fhirjson.loads(read.content))) == canonical(sent)


def _location(response: httpx.Response) -> str:
    return "/fhir/" + response.headers["Location"].split("/fhir/", 1)[1].split("/_history/", 1)[0]


@given(resource=resources())
async def test_a_valid_resource_created_round_trips_byte_for_byte(client: httpx.AsyncClient,
                                                                  resource: dict[str, Any]) -> None:
    response = await client.post(f"/fhir/{resource['resourceType']}", content=fhirjson.dumps(resource),
                                 headers=HEADERS)
    assert_not_server_error(response)
    assert response.status_code == 201, response.text[:2000]
    await _assert_stored_as_sent(client, _location(response), resource)


@given(resource=resources(), data=st.data())
async def test_a_valid_resource_updated_round_trips_byte_for_byte(client: httpx.AsyncClient,
                                                                  resource: dict[str, Any], data: Any) -> None:
    resource_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    path = f"/fhir/{resource['resourceType']}/{resource_id}"
    first = await client.put(path, content=fhirjson.dumps({**resource, "id": resource_id}), headers=HEADERS)
    assert_not_server_error(first)
    assert first.status_code == 201, first.text[:2000]
    await _assert_stored_as_sent(client, path, resource)
    second = data.draw(resources(resource["resourceType"]), label="new version")
    update = await client.put(path, content=fhirjson.dumps({**second, "id": resource_id}), headers=HEADERS)
    assert update.status_code == 200, update.text[:2000]
    await _assert_stored_as_sent(client, path, second)


async def _count(client: httpx.AsyncClient, resource_type: str) -> int:
    response = await client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    return fhirjson.loads(response.content)["total"]  # type: ignore[no-any-return]


@given(mutation=resources().flatmap(mutations))
async def test_an_invalid_resource_created_is_a_4xx_naming_the_element(client: httpx.AsyncClient,
                                                                       mutation: Mutation) -> None:
    kind = mutation.resource["resourceType"]
    response = await client.post(f"/fhir/{kind}", content=mutation.body(fhirjson.dumps), headers=HEADERS)
    assert_not_server_error(response)
    assert_names_element(response, mutation.kind, mutation.path)


@given(mutation=resources().flatmap(mutations))
async def test_an_invalid_resource_updated_is_a_4xx_naming_the_element_and_stores_nothing(
        client: httpx.AsyncClient, mutation: Mutation) -> None:
    kind = mutation.resource["resourceType"]
    resource_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    mutation.resource["id"] = resource_id
    response = await client.put(f"/fhir/{kind}/{resource_id}", content=mutation.body(fhirjson.dumps),
                                headers=HEADERS)
    assert_not_server_error(response)
    assert_names_element(response, mutation.kind, mutation.path)
    assert (await client.get(f"/fhir/{kind}/{resource_id}")).status_code == 404


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _entry(resource: dict[str, Any], method: str) -> dict[str, Any]:
    kind = resource["resourceType"]
    if method == "PUT":
        resource = {**resource, "id": f"fuzz-{uuid.uuid4().hex[:12]}"}
        return {"fullUrl": f"http://testserver/fhir/{kind}/{resource['id']}", "resource": resource,
                "request": {"method": "PUT", "url": f"{kind}/{resource['id']}"}}
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource, "request": {"method": "POST", "url": kind}}


@given(batch=st.lists(st.tuples(resources(), st.sampled_from(["POST", "PUT"])), min_size=1, max_size=4))
async def test_valid_resources_in_a_transaction_round_trip_byte_for_byte(
        client: httpx.AsyncClient, batch: list[tuple[dict[str, Any], str]]) -> None:
    bundle = _transaction([_entry(resource, method) for resource, method in batch])
    response = await client.post("/fhir", content=fhirjson.dumps(bundle), headers=HEADERS)
    assert_not_server_error(response)
    assert response.status_code == 200, response.text[:2000]
    answers = fhirjson.loads(response.content)["entry"]
    for (resource, _method), answer in zip(batch, answers, strict=True):
        location = "/fhir/" + answer["response"]["location"].split("/_history/", 1)[0].split("/fhir/")[-1]
        await _assert_stored_as_sent(client, location, resource)


@given(valid=st.lists(resources(), max_size=3), mutation=resources().flatmap(mutations), at=st.integers(0, 3),
       method=st.sampled_from(["POST", "PUT"]))
async def test_a_transaction_with_one_invalid_resource_is_a_4xx_naming_the_element_and_stores_nothing(
        client: httpx.AsyncClient, valid: list[dict[str, Any]], mutation: Mutation, at: int, method: str) -> None:
    kinds = {r["resourceType"] for r in [*valid, mutation.resource]}
    before = {kind: await _count(client, kind) for kind in kinds}
    entries = [_entry(resource, "POST") for resource in valid]
    broken = _entry(mutation.resource, method)
    at = min(at, len(entries))
    entries.insert(at, broken)
    text = fhirjson.dumps(_transaction(entries))
    if mutation.raw:
        text = text.replace(*mutation.raw)
    response = await client.post("/fhir", content=text, headers=HEADERS)
    assert_not_server_error(response)
    assert_names_element(response, mutation.kind, mutation.path, mutation.in_bundle(at))
    assert {kind: await _count(client, kind) for kind in kinds} == before
