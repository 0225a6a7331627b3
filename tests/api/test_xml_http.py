"""FHIR XML over HTTP (https://hl7.org/fhir/R4/http.html#mime-type, https://hl7.org/fhir/R4/xml.html): bodies read
and responses written in ``application/fhir+xml`` (``Content-Type``, ``Accept``, ``_format``), every interaction
and its errors, with the same resource whichever format it travelled in."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from fhir_server import fhirjson
from fhir_server.xml_format import resource_from_xml, resource_to_xml
from tests.conftest import FHIR_JSON, parse, patient, unique

FHIR_XML = "application/fhir+xml"
XML = {"Content-Type": FHIR_XML, "Accept": FHIR_XML}


def _xml(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == f"{FHIR_XML}; charset=utf-8", response.text
    assert response.content.startswith(b"<?xml")
    return resource_from_xml(response.content)


def _observation(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "haemoglobin"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": Decimal("13.50"), "unit": "g/dL"},
            "_status": {"extension": [{"url": "http://example.org/why", "valueString": "checked twice"}]}}


async def test_a_resource_created_in_xml_reads_back_the_same_in_both_formats(client: httpx.AsyncClient) -> None:
    created = await client.post("/fhir/Patient", content=resource_to_xml(patient(unique())), headers=XML)
    assert created.status_code == 201
    stored = _xml(created)
    observation = _observation(stored["id"])
    response = await client.post("/fhir/Observation", content=resource_to_xml(observation), headers=XML)
    assert response.status_code == 201, response.text
    in_xml = _xml(await client.get(f"/fhir/Observation/{_xml(response)['id']}", headers={"Accept": FHIR_XML}))
    in_json = fhirjson.loads((await client.get(f"/fhir/Observation/{in_xml['id']}")).content)
    assert in_xml == in_json
    assert in_json["valueQuantity"]["value"] == Decimal("13.50") and str(in_json["valueQuantity"]["value"]) == "13.50"
    assert in_json["_status"] == observation["_status"]


async def test_format_xml_and_a_generic_xml_accept_answer_xml(client: httpx.AsyncClient) -> None:
    created = parse(await client.post("/fhir/Patient", json=patient(unique()),
                                      headers={"Content-Type": FHIR_JSON}))
    for url, headers in ((f"/fhir/Patient/{created['id']}?_format=xml", {}),
                         (f"/fhir/Patient/{created['id']}", {"Accept": "application/xml"}),
                         (f"/fhir/Patient/{created['id']}?_format=application/fhir%2Bxml", {"Accept": FHIR_JSON})):
        assert _xml(await client.get(url, headers=headers))["id"] == created["id"], url


async def test_a_search_answers_a_bundle_in_xml(client: httpx.AsyncClient) -> None:
    created = parse(await client.post("/fhir/Patient", json=patient(unique()), headers={"Content-Type": FHIR_JSON}))
    bundle = _xml(await client.get(f"/fhir/Patient?_id={created['id']}", headers={"Accept": FHIR_XML}))
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == created["id"]


async def test_a_transaction_in_xml_is_answered_in_xml(client: httpx.AsyncClient) -> None:
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9a5e1b6e-0d0b-4bb0-9d6c-2d6c1b0b8a11", "resource": patient(unique()),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": _observation("placeholder") | {"subject": {
            "reference": "urn:uuid:9a5e1b6e-0d0b-4bb0-9d6c-2d6c1b0b8a11"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    answer = _xml(await client.post("/fhir", content=resource_to_xml(transaction), headers=XML))
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created", "201 Created"]


async def test_a_fhirpath_patch_in_xml_applies(client: httpx.AsyncClient) -> None:
    created = parse(await client.post("/fhir/Patient", json=patient(unique()), headers={"Content-Type": FHIR_JSON}))
    patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "other"}]}]}
    response = await client.patch(f"/fhir/Patient/{created['id']}", content=resource_to_xml(patch), headers=XML)
    assert response.status_code == 200, response.text
    assert _xml(response)["gender"] == "other"


async def test_errors_are_operation_outcomes_in_the_format_asked_for(client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"/fhir/Patient/{unique('none-')}", headers={"Accept": FHIR_XML})
    assert unknown.status_code == 404 and _xml(unknown)["resourceType"] == "OperationOutcome"
    invalid = await client.post("/fhir/Patient", content=resource_to_xml({"resourceType": "Patient",
                                                                        "gender": "sometimes"}), headers=XML)
    assert invalid.status_code == 400
    [issue] = _xml(invalid)["issue"]
    assert issue["expression"] == ["Patient.gender"]


async def test_xml_that_is_no_fhir_resource_is_400_with_its_reason(client: httpx.AsyncClient) -> None:
    cases = {
        b"<Patient xmlns='http://hl7.org/fhir'><gender value='male'>": "well-formed",
        b"<Patient xmlns='urn:other'/>": "namespace",
        b"<Patient xmlns='http://hl7.org/fhir'><colour value='red'/></Patient>": "colour",
        b"<!DOCTYPE Patient [<!ENTITY e 'boom'>]><Patient xmlns='http://hl7.org/fhir'/>": "",
    }
    for body, reason in cases.items():
        response = await client.post("/fhir/Patient", content=body, headers={"Content-Type": FHIR_XML})
        assert response.status_code == 400, (body, response.text)
        assert reason.lower() in response.text.lower(), (body, response.text)


async def test_xml_nested_too_deep_is_400_before_it_is_walked(client: httpx.AsyncClient) -> None:
    deep = b"<Patient xmlns='http://hl7.org/fhir'>" + b"<extension url='x'>" * 5000 + b"</extension>" * 5000
    response = await client.post("/fhir/Patient", content=deep + b"</Patient>", headers={"Content-Type": FHIR_XML})
    assert response.status_code == 400 and "nested deeper" in response.text


async def test_the_capability_statement_offers_xml_and_is_served_in_it(client: httpx.AsyncClient) -> None:
    statement = _xml(await client.get("/fhir/metadata", headers={"Accept": FHIR_XML}))
    assert {"xml", FHIR_XML} <= set(statement["format"]) and FHIR_XML in statement["patchFormat"]


async def test_xml_content_sent_to_binary_is_kept_as_content(client: httpx.AsyncClient) -> None:
    """A CDA document is XML but no FHIR resource: ``application/xml`` to Binary is its native content, while
    a Binary resource comes as ``application/fhir+xml``."""
    document = b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>Letter</title></ClinicalDocument>"
    stored = await client.post("/fhir/Binary", content=document, headers={"Content-Type": "application/xml"})
    assert stored.status_code == 201, stored.text
    native = await client.get(f"/fhir/Binary/{parse(stored)['id']}", headers={"Accept": "application/xml"})
    assert native.content == document and native.headers["content-type"].startswith("application/xml")
    resource = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}
    as_resource = await client.post("/fhir/Binary", content=resource_to_xml(resource), headers=XML)
    assert as_resource.status_code == 201 and _xml(as_resource)["data"] == "aGVsbG8="
