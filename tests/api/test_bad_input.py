"""Bad input never corrupts anything: every error is an OperationOutcome with the right status."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import FHIR_JSON, parse, patient, post, unique


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


async def test_xml_body_is_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                          headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_xml_accept_is_406(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406


async def test_format_xml_is_406(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata?_format=xml")
    assert r.status_code == 406


async def test_accept_any_gets_fhir_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata", headers={"Accept": "text/html,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(FHIR_JSON)


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
