"""Bad input never corrupts anything: every error is an OperationOutcome with the right status."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON, _client, body, parse, patient, post, unique


def _issue(r: httpx.Response) -> dict:
    outcome = parse(r)
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert _issue(r)["code"] == "structure"


async def test_unknown_element_is_400_with_expression(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique(), favouriteColour="blue"))
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["Patient.favouriteColour"]


async def test_wrong_primitive_type_is_400(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique(), active="true"))
    assert r.status_code == 400
    assert any(i.get("expression") == ["Patient.active"] for i in parse(r)["issue"])


async def test_bad_date_is_400(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique(), birthDate="1960-13-45"))
    assert r.status_code == 400
    assert "Patient.birthDate" in _issue(r)["expression"]


async def test_resource_type_mismatch_is_400(client: httpx.AsyncClient) -> None:
    r = await post(client, "Observation", patient(unique()))
    assert r.status_code == 400
    assert _issue(r)["expression"] == ["resourceType"]


async def test_body_not_an_object_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b"[1, 2]", headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400


async def test_a_body_in_a_format_the_server_does_not_read_is_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b"@prefix fhir: <http://hl7.org/fhir/> .",
                          headers={"Content-Type": "text/turtle"})
    assert r.status_code == 415
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_an_accept_of_a_format_the_server_does_not_write_is_406(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata", headers={"Accept": "text/turtle"})
    assert r.status_code == 406


async def test_format_turtle_is_406(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata?_format=ttl")
    assert r.status_code == 406


async def test_accept_any_gets_fhir_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata", headers={"Accept": "text/html,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(FHIR_JSON)


async def test_accept_of_r4_by_its_fhir_version_gets_fhir_json(client: httpx.AsyncClient) -> None:
    for accept in ("application/fhir+json; fhirVersion=4.0", "application/fhir+json;fhirVersion=4.0.1"):
        r = await client.get("/fhir/metadata", headers={"Accept": accept})
        assert r.status_code == 200, accept


async def test_accept_of_another_fhir_version_only_is_406(client: httpx.AsyncClient) -> None:
    """http.html#version-parameter: this server has R4 content only."""
    r = await client.get("/fhir/metadata", headers={"Accept": "application/fhir+json; fhirVersion=3.0"})
    assert r.status_code == 406 and parse(r)["resourceType"] == "OperationOutcome"
    either = "application/fhir+json; fhirVersion=5.0, application/fhir+json; fhirVersion=4.0; q=0.5"
    assert (await client.get("/fhir/metadata", headers={"Accept": either})).status_code == 200


async def test_body_of_another_fhir_version_is_415_and_of_r4_is_taken(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=body(patient(unique())),
                          headers={"Content-Type": "application/fhir+json; fhirVersion=3.0"})
    assert r.status_code == 415 and parse(r)["resourceType"] == "OperationOutcome"
    r = await client.post("/fhir/Patient", content=body(patient(unique())),
                          headers={"Content-Type": "application/fhir+json; fhirVersion=4.0; charset=utf-8"})
    assert r.status_code == 201, r.text


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    big = patient(unique(), text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                  + "x" * 1_100_000 + "</div>"})
    r = await post(client, "Patient", big)
    assert r.status_code == 413
    assert parse(r)["issue"][0]["code"] == "too-costly"


async def test_unsupported_method_is_405(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient/some-id", content=b"{}", headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 405
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_unknown_path_is_404_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/1/_history/1/extra")
    assert r.status_code == 404
    assert parse(r)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("payload", [b"", b"null", b"\xff\xfe", b'{"resourceType": 5}',
                                     b'{"resourceType":"Patient","id":"a b"}'])
async def test_garbage_bodies_are_400_never_500(client: httpx.AsyncClient, payload: bytes) -> None:
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400


async def test_failed_create_stores_nothing(client: httpx.AsyncClient) -> None:
    marker = unique()
    await post(client, "Patient", patient(marker, active="yes"))
    history = parse(await client.get("/fhir/Patient/_history?_count=1000"))
    assert all(marker not in str(e.get("resource", {})) for e in history.get("entry", []))


@pytest.mark.parametrize("number", [b"1e7000", b"1e-7000", b"1.0000000000000000000000000000000000000001",
                                    b"123456789012345678901234567890123456789012"])
async def test_number_that_cannot_be_stored_exactly_is_400(client: httpx.AsyncClient, number: bytes) -> None:
    payload = (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
               b'"valueQuantity":{"value":' + number + b'}}')
    r = await client.post("/fhir/Observation", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400, r.text
    assert _issue(r)["severity"] == "error"


# -- hostile JSON (test_no_server_errors sends the extreme cases through every body reader) ---------------------

async def test_repeated_property_name_is_400_naming_it(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient","gender":"male","gender":"female"}',
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert _issue(r)["code"] == "structure" and "'gender'" in _issue(r)["diagnostics"]


async def test_repeated_property_name_in_a_nested_object_is_400(client: httpx.AsyncClient) -> None:
    payload = b'{"resourceType":"Patient","name":[{"family":"A","given":["B"],"family":"C"}]}'
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and "'family'" in _issue(r)["diagnostics"]


async def test_lone_surrogate_escape_is_400_structure(client: httpx.AsyncClient) -> None:
    payload = b'{"resourceType":"Patient","name":[{"family":"\\udc00 low"}]}'
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and _issue(r)["code"] == "structure"


async def test_escaped_surrogate_pair_is_one_character_and_accepted(client: httpx.AsyncClient) -> None:
    payload = b'{"resourceType":"Patient","name":[{"family":"\\ud83d\\ude00 \\\\ud800"}]}'
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    assert parse(r)["name"][0]["family"] == "\U0001F600 \\ud800"  # a pair, and an escaped backslash


async def _server(services: Services, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    changed = dataclasses.replace(services, settings=services.settings.model_copy(update=settings))
    async with _client(changed) as client:
        yield client


@pytest.fixture
async def narrow(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A server that accepts JSON at most 4 levels deep with at most 3 elements per array."""
    async for client in _server(services, max_json_depth=4, max_json_array_items=3):
        yield client


async def test_nesting_deeper_than_the_setting_is_400(narrow: httpx.AsyncClient) -> None:
    assert (await post(narrow, "Patient", patient(name=[{"given": ["x"]}]))).status_code == 201  # 4 levels
    r = await post(narrow, "Patient", patient(name=[{"extension": [{"url": "http://x.org/e", "valueString": "y"}]}]))
    assert r.status_code == 400 and _issue(r)["diagnostics"] == "The JSON is nested deeper than 4 levels"


async def test_array_longer_than_the_setting_is_400(narrow: httpx.AsyncClient) -> None:
    assert (await post(narrow, "Patient", patient(name=[{"given": ["a", "b", "c"]}]))).status_code == 201
    r = await post(narrow, "Patient", patient(name=[{"given": ["a", "b", "c", "d"]}]))
    assert r.status_code == 400 and _issue(r)["code"] == "too-costly"
    patch = [{"op": "test", "path": "/gender", "value": "female"}] * 4  # JSON Patch bodies too
    r = await narrow.patch("/fhir/Patient/x", content=body(patch),
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400 and _issue(r)["code"] == "too-costly"


def test_nesting_limit_cannot_exceed_what_mongodb_stores() -> None:
    with pytest.raises(ValidationError):
        Settings(max_json_depth=171)


# Hostile JSON is refused before the resource is read, but the OperationOutcome still names the element.

async def test_a_lone_surrogate_is_400_at_its_element(client: httpx.AsyncClient) -> None:
    payload = b'{"resourceType":"Patient","name":[{"given":["A","\\udc00 low"]}]}'
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.name[0].given[1]"]


async def test_a_number_decimal128_cannot_hold_is_400_at_its_element(client: httpx.AsyncClient) -> None:
    for number in (b"1." + b"0" * 40 + b"1", b"1E-7000", b"9" * 40):
        payload = b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":' \
                  + number + b"}}"
        r = await client.post("/fhir/Observation", content=payload, headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 400 and _issue(r)["expression"] == ["Observation.valueQuantity.value"], number


async def test_nesting_deeper_than_the_setting_is_400_at_the_first_element_too_deep(
        narrow: httpx.AsyncClient) -> None:
    r = await post(narrow, "Patient", patient(name=[{"extension": [{"url": "http://x.org/e", "valueString": "y"}]}]))
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.name[0].extension[0]"]


async def test_an_array_longer_than_the_setting_is_400_at_that_array(narrow: httpx.AsyncClient) -> None:
    r = await post(narrow, "Patient", patient(name=[{"given": ["a", "b", "c", "d"]}]))
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.name[0].given"]


async def test_a_repeated_property_name_is_400_at_its_element(client: httpx.AsyncClient) -> None:
    payload = b'{"resourceType":"Patient","name":[{"family":"A","given":["B"],"family":"C"}]}'
    r = await client.post("/fhir/Patient", content=payload, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.name[0].family"]
    r = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient","gender":"male","gender":"female"}',
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.gender"]
    r = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient","resourceType":"x"}',
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400 and _issue(r)["expression"] == ["Patient.resourceType"]
