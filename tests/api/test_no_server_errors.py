"""Nothing a client sends causes a 500: official examples mutated at random (wrong JSON types, garbage
values, removed or repeated elements) are answered with 2xx or 4xx, always with an OperationOutcome on
error, and bad writes store nothing. Hostile JSON (deep nesting, a repeated property, a lone surrogate, a huge
array) is a 400 through every endpoint that reads a body, and the server goes on serving."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage.documents import HISTORY
from tests.conftest import FHIR_JSON, load_example, official_examples

GARBAGE: list[Any] = ["", " ", "x" * 300, "2020-13-45", -1, 0, 1.5, True, None, [], {}, [None], {"a": 1},
                      "\u0000", "<script>", "urn:uuid:x", "Patient/", "../../etc", 10**30]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out += _paths(value, (*prefix, index))
    return out


def _mutate(resource: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(resource)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(mutated) if p != ("resourceType",)]
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = mutated
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = rng.choice(GARBAGE)
        elif action < 0.8 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[path[-1] + "x"] = parent[path[-1]]
    return mutated


CASES = [(name, seed) for name in [p.name for p in official_examples()][::6] for seed in range(4)]


@pytest.mark.parametrize(("name", "seed"), CASES)
async def test_mutated_example_is_never_a_server_error(client: httpx.AsyncClient, name: str, seed: int) -> None:
    rng = random.Random(f"{name}/{seed}")
    resource = _mutate(load_example(name), rng)
    kind = resource["resourceType"]
    payload = json.dumps(resource, default=str).encode()
    resource_id = resource.get("id") if isinstance(resource.get("id"), str) and resource.get("id") else "x"
    for response in (
        await client.post(f"/fhir/{kind}", content=payload, headers={"Content-Type": FHIR_JSON}),
        await client.put(f"/fhir/{kind}/{resource_id}", content=payload,
                         headers={"Content-Type": FHIR_JSON}),
    ):
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("url", [
    "/fhir/Patient?birthdate=2020-99", "/fhir/Patient?_count=-1", "/fhir/Patient?_sort=nonsense",
    "/fhir/Observation?value-quantity=abc", "/fhir/Patient?_page=garbage", "/fhir/Patient/%00",
    "/fhir/Patient/x/_history/abc", "/fhir/_history?_count=x", "/fhir/Patient?_include=Nope:nope",
    "/fhir/Observation?subject:Patient.name:exact=x", "/fhir/Patient?_has:Observation=x",
])
async def test_odd_urls_are_never_a_server_error(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url, headers={"Prefer": "handling=strict"})
    assert response.status_code < 500, response.text


@pytest.mark.parametrize(("content_type", "payload"), [
    ("application/x-www-form-urlencoded", b"\xff\xfe=\x00"), ("application/x-www-form-urlencoded", b"a=%ZZ&&=="),
    ("multipart/form-data", b"--x\r\n"), ("", b""), ("application/x-www-form-urlencoded", b"_count=abc"),
])
async def test_odd_post_search_bodies_are_never_a_server_error(client: httpx.AsyncClient, content_type: str,
                                                               payload: bytes) -> None:
    response = await client.post("/fhir/Patient/_search", content=payload, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text



@pytest.mark.parametrize("parameter", ["abc", [1], [{"name": "resource", "resource": "x"}], {"name": "mode"}])
async def test_odd_parameters_bodies_are_never_a_server_error(client: httpx.AsyncClient, parameter: Any) -> None:
    payload = json.dumps({"resourceType": "Parameters", "parameter": parameter}).encode()
    response = await client.post("/fhir/Patient/$validate", content=payload, headers={"Content-Type": FHIR_JSON})
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("request_fields", [{"ifNoneExist": 5}, {"ifMatch": 5}, {"ifNoneMatch": ["x"]},
                                            {"url": {"a": 1}}, {"method": None}])
async def test_odd_bundle_entry_requests_are_never_a_server_error(client: httpx.AsyncClient,
                                                                   request_fields: dict[str, Any]) -> None:
    resource = {"resourceType": "Patient", "id": "odd-entry", "gender": "female"}
    await client.put("/fhir/Patient/odd-entry", content=json.dumps(resource).encode(),
                     headers={"Content-Type": FHIR_JSON})
    for kind, method, url in (("transaction", "POST", "Patient"), ("transaction", "PUT", "Patient/odd-entry"),
                              ("batch", "GET", "Patient/odd-entry")):
        entry = {"resource": resource if method != "GET" else None,
                 "request": {"method": method, "url": url, **request_fields}}
        payload = json.dumps({"resourceType": "Bundle", "type": kind, "entry": [entry]}).encode()
        response = await client.post("/fhir", content=payload, headers={"Content-Type": FHIR_JSON})
        assert response.status_code < 500, (kind, method, response.text)


@pytest.mark.parametrize("parameters", [{"resourceType": "Parameters", "parameter": "abc"},
                                        {"resourceType": "Parameters", "parameter": [1, "x", None]}])
async def test_malformed_export_parameters_are_never_a_server_error(client: httpx.AsyncClient,
                                                                    parameters: dict) -> None:
    # an unsupported _outputFormat makes the kick-off fail after reading the body: no export job is started
    response = await client.post("/fhir/$export?_outputFormat=text/plain", content=json.dumps(parameters).encode(),
                                 headers={"Content-Type": FHIR_JSON, "Prefer": "respond-async",
                                          "Accept": FHIR_JSON})
    assert response.status_code == 400, response.text


# -- hostile JSON ---------------------------------------------------------------------------------------------

HOSTILE_ID = "hostile-json"
# Patient texts with the hostile part inside, as a client could send them (not producible with json.dumps)
HOSTILE: dict[str, tuple[bytes, str]] = {  # name: (Patient JSON text, OperationOutcome issue code)
    "5,000 levels of nesting": (b'{"resourceType":"Patient","id":"hostile-json","extension":'
                                + b"[" * 5000 + b"]" * 5000 + b"}", "structure"),
    "a duplicate property name": (b'{"resourceType":"Patient","id":"hostile-json","gender":"male",'
                                  b'"gender":"female"}', "structure"),
    "a lone surrogate": (b'{"resourceType":"Patient","id":"hostile-json","name":[{"family":"X\\ud800"}]}',
                         "structure"),
    "a 100,000-element array": (b'{"resourceType":"Patient","id":"hostile-json","name":[{"given":['
                                + b",".join([b'"x"'] * 100_000) + b"]}]}", "too-costly"),
}


def _transaction(resource: bytes) -> bytes:
    return (b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":' + resource
            + b',"request":{"method":"PUT","url":"Patient/hostile-json"}}]}')


def _parameters(resource: bytes) -> bytes:
    return b'{"resourceType":"Parameters","parameter":[{"name":"resource","resource":' + resource + b"}]}"


def _json_patch(resource: bytes) -> bytes:
    return b'[{"op":"add","path":"/contained","value":[' + resource + b"]}]"


def _fhirpath_patch(resource: bytes) -> bytes:
    return (b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":'
            b'"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"contained"},'
            b'{"name":"value","resource":' + resource + b"}]}]}")


ENDPOINTS = {  # name: (method, path, content type, body around the hostile Patient)
    "create": ("POST", "/fhir/Patient", FHIR_JSON, lambda r: r),
    "update": ("PUT", f"/fhir/Patient/{HOSTILE_ID}", FHIR_JSON, lambda r: r),
    "transaction": ("POST", "/fhir", FHIR_JSON, _transaction),
    "$validate": ("POST", "/fhir/Patient/$validate", FHIR_JSON, lambda r: r),
    "$validate with Parameters": ("POST", "/fhir/Patient/$validate", FHIR_JSON, _parameters),
    "patch": ("PATCH", f"/fhir/Patient/{HOSTILE_ID}", "application/json-patch+json", _json_patch),
    "FHIRPath patch": ("PATCH", f"/fhir/Patient/{HOSTILE_ID}", FHIR_JSON, _fhirpath_patch),
}


async def _stored(db: AsyncDatabase) -> tuple[int, int]:
    return await db["Patient"].count_documents({}), await db[HISTORY].count_documents({"type": "Patient"})


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("hostile", list(HOSTILE))
async def test_hostile_json_is_400_and_the_server_goes_on(client: httpx.AsyncClient, db: AsyncDatabase,
                                                          hostile: str, endpoint: str) -> None:
    resource, code = HOSTILE[hostile]
    method, path, content_type, wrap = ENDPOINTS[endpoint]
    before = await _stored(db)
    response = await client.request(method, path, content=wrap(resource), headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text[:300]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert (await client.get("/fhir/Patient?_count=1")).status_code == 200  # the server still serves
    assert await _stored(db) == before


@pytest.mark.parametrize("unit_code", ["(" * 3000 + "m" + ")" * 3000, "m" + "9" * 80, "10*" + "9" * 40, "[IU", "/"])
async def test_a_ucum_quantity_of_any_code_is_stored(client: httpx.AsyncClient, unit_code: str) -> None:
    """The unit code is parsed at write time for its canonical form (terminology/ucum.py): a code UCUM cannot reduce
    is stored as it is, found by its own code."""
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "odd unit"},
                   "valueQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": unit_code}}
    response = await client.post("/fhir/Observation", content=json.dumps(observation).encode(),
                                 headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text[:500]
