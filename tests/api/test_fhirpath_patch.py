"""patch with FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html, http.html#patch): a Parameters resource sent
as application/fhir+json, its operations applied in order, the result checked and stored as an update; in a
transaction, a PATCH entry whose resource is the Parameters."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.conftest import FHIR_JSON, body, parse, patient, post, unique


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One ``operation`` parameter; ``value`` is given as {"valueX": ...} or {"part": [...]}."""
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"name": "operation", "part": out}


def fhirpath_patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


async def send(client: httpx.AsyncClient, reference: str, document: Any, **headers: str) -> httpx.Response:
    return await client.patch(f"/fhir/{reference}", content=body(document),
                              headers={"Content-Type": FHIR_JSON, **headers})


async def stored_patient(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    created = await post(client, "Patient", {**patient(unique()), **extra})
    assert created.status_code == 201, created.text
    return dict(parse(created))


async def test_fhirpath_patch_applies_its_operations_in_order_as_a_new_version(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client, name=[{"family": "Doe", "given": ["Ann", "Bea"]}],
                                   telecom=[{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}])
    document = fhirpath_patch(
        operation("replace", "Patient.birthDate", value={"valueDate": "1951-02-03"}),
        operation("add", "Patient", name="active", value={"valueBoolean": True}),
        operation("delete", "Patient.telecom.where(system = 'email')"),
        operation("insert", "Patient.name[0].given", index=0, value={"valueString": "Cleo"}),
        operation("move", "Patient.name[0].given", source=2, destination=1),
        operation("add", "Patient", name="contact",
                  value={"part": [{"name": "gender", "valueCode": "female"},
                                  {"name": "name", "valueHumanName": {"family": "Roe"}}]}))
    response = await send(client, f"Patient/{created['id']}", document)
    assert response.status_code == 200, response.text
    patched = parse(response)
    assert patched["meta"]["versionId"] == "2"
    assert patched["birthDate"] == "1951-02-03" and patched["active"] is True
    assert patched["telecom"] == [{"system": "phone", "value": "1"}]
    assert patched["name"][0]["given"] == ["Cleo", "Bea", "Ann"]
    assert patched["contact"] == [{"gender": "female", "name": {"family": "Roe"}}]
    assert parse(await client.get(f"/fhir/Patient/{created['id']}")) == patched


async def test_fhirpath_patch_adds_a_choice_element_by_its_name_and_value_type(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    document = fhirpath_patch(operation("add", "Patient", name="deceased", value={"valueBoolean": False}))
    response = await send(client, f"Patient/{created['id']}", document)
    assert response.status_code == 200, response.text
    assert parse(response)["deceasedBoolean"] is False


async def test_fhirpath_patch_adds_an_extension_from_parts_and_a_contained_resource(
        client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    practitioner = {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Who"}]}
    document = fhirpath_patch(
        operation("add", "Patient", name="extension",
                  value={"part": [{"name": "url", "valueUri": "http://example.org/fhir/StructureDefinition/x"},
                                  {"name": "valueString", "valueString": "y"}]}),
        {"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                       {"name": "path", "valueString": "Patient"},
                                       {"name": "name", "valueString": "contained"},
                                       {"name": "value", "resource": practitioner}]},
        operation("add", "Patient", name="generalPractitioner", value={"valueReference": {"reference": "#gp"}}))
    response = await send(client, f"Patient/{created['id']}", document)
    assert response.status_code == 200, response.text
    patched = parse(response)
    assert patched["extension"] == [{"url": "http://example.org/fhir/StructureDefinition/x", "valueString": "y"}]
    assert patched["contained"] == [practitioner]
    assert patched["generalPractitioner"] == [{"reference": "#gp"}]


async def test_fhirpath_patch_deleting_what_is_not_there_changes_nothing(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    response = await send(client, f"Patient/{created['id']}", fhirpath_patch(operation("delete", "Patient.photo")))
    assert response.status_code == 200, response.text
    assert parse(response)["meta"]["versionId"] == "1"  # the same content: no new version


async def test_an_empty_fhirpath_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    # FHIR's patch test cases ("No Difference"): a Parameters without operations leaves the resource as it is
    created = await stored_patient(client)
    response = await send(client, f"Patient/{created['id']}", fhirpath_patch())
    assert response.status_code == 200, response.text
    assert parse(response)["meta"]["versionId"] == "1"


async def test_a_delete_drops_the_elements_it_leaves_empty(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client, maritalStatus={"text": "married"})
    response = await send(client, f"Patient/{created['id']}",
                          fhirpath_patch(operation("delete", "Patient.maritalStatus.text")))
    assert response.status_code == 200, response.text
    assert "maritalStatus" not in parse(response)  # not {}: an element has a value or children (ele-1)


@pytest.mark.parametrize(("operations", "why"), [
    ([operation("replace", "Patient.active", value={"valueBoolean": True})], "selects 0 elements"),
    ([operation("delete", "Patient.name.given")], "only one can be deleted"),
    ([operation("add", "Patient", name="birthDate", value={"valueDate": "2000"})], "already has a value"),
    ([operation("add", "Patient", name="nickname", value={"valueString": "x"})], "is not an element"),
    ([operation("insert", "Patient.name", index=5, value={"valueHumanName": {"family": "X"}})], "past the end"),
    ([operation("delete", "Patient.name.where(%undefined)")], "could not be evaluated"),
])
async def test_fhirpath_patch_that_cannot_be_applied_is_422_and_stores_nothing(
        client: httpx.AsyncClient, operations: list[dict[str, Any]], why: str) -> None:
    created = await stored_patient(client, name=[{"given": ["Ann", "Bea"]}])
    response = await send(client, f"Patient/{created['id']}", fhirpath_patch(*operations))
    assert response.status_code == 422, response.text
    issue = parse(response)["issue"][0]
    assert issue["code"] == "processing" and why in issue["diagnostics"]
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["meta"]["versionId"] == "1"


@pytest.mark.parametrize(("document", "code"), [
    (fhirpath_patch(operation("delete", "Patient.name.count()")), "not-supported"),
    (fhirpath_patch(operation("delete", "Patient.name.where(")), "invalid"),
    (fhirpath_patch(operation("rename", "Patient.name")), "value"),
    (fhirpath_patch(operation("replace", "Patient.birthDate")), "required"),
    ({"resourceType": "Parameters", "parameter": [{"name": "op", "valueString": "x"}]}, "structure"),
    ({"resourceType": "Patient"}, "structure"),
])
async def test_malformed_fhirpath_patch_is_400(client: httpx.AsyncClient, document: Any, code: str) -> None:
    created = await stored_patient(client)
    response = await send(client, f"Patient/{created['id']}", document)
    assert response.status_code == 400, response.text
    assert parse(response)["issue"][0]["code"] == code


async def test_fhirpath_patch_making_an_invalid_resource_is_400(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    document = fhirpath_patch(operation("replace", "Patient.birthDate", value={"valueString": "not-a-date"}))
    response = await send(client, f"Patient/{created['id']}", document)
    assert response.status_code == 400, response.text
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["meta"]["versionId"] == "1"


async def test_fhirpath_patch_with_a_stale_if_match_is_412(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    document = fhirpath_patch(operation("add", "Patient", name="active", value={"valueBoolean": True}))
    assert (await send(client, f"Patient/{created['id']}", document, **{"If-Match": 'W/"1"'})).status_code == 200
    assert (await send(client, f"Patient/{created['id']}", document, **{"If-Match": 'W/"1"'})).status_code == 412


async def test_a_patch_sent_as_the_other_media_type_is_415(client: httpx.AsyncClient) -> None:
    created = await stored_patient(client)
    document = fhirpath_patch(operation("add", "Patient", name="active", value={"valueBoolean": True}))
    response = await client.patch(f"/fhir/Patient/{created['id']}", content=body(document),
                                  headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 415


async def test_transaction_patch_entry_with_a_fhirpath_patch(client: httpx.AsyncClient) -> None:
    first = await stored_patient(client)
    second = await stored_patient(client)
    json_patch = base64.b64encode(b'[{"op":"add","path":"/active","value":false}]').decode()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": fhirpath_patch(operation("add", "Patient", name="active", value={"valueBoolean": True})),
         "request": {"method": "PATCH", "url": f"Patient/{first['id']}"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": json_patch},
         "request": {"method": "PATCH", "url": f"Patient/{second['id']}"}}]}
    response = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in parse(response)["entry"]] == ["200 OK", "200 OK"]
    assert parse(await client.get(f"/fhir/Patient/{first['id']}"))["active"] is True
    assert parse(await client.get(f"/fhir/Patient/{second['id']}"))["active"] is False


async def test_capability_statement_lists_both_patch_formats(client: httpx.AsyncClient) -> None:
    """JSON Patch, and FHIRPath Patch in both FHIR formats."""
    capabilities = parse(await client.get("/fhir/metadata"))
    assert set(capabilities["patchFormat"]) == {"application/json-patch+json", FHIR_JSON, "application/fhir+xml"}
