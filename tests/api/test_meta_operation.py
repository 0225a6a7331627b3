"""``$meta`` (https://hl7.org/fhir/R4/resource-operation-meta.html): the profiles, tags and security labels in use, of
a resource, a type or every type, as a Parameters with one ``return`` Meta."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, unique

CORE_PATIENT = "http://hl7.org/fhir/StructureDefinition/Patient"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def _returned(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    parameters = parse(response)
    assert parameters["resourceType"] == "Parameters"
    [returned] = parameters["parameter"]
    assert returned["name"] == "return"
    return dict(returned["valueMeta"])


async def _create(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await client.post(f"/fhir/{resource['resourceType']}", content=body(resource),
                                 headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    return str(parse(response)["id"])


def _tagged(system: str, code: str, **meta: Any) -> dict[str, Any]:
    return patient(unique(), meta={"tag": [{"system": system, "code": code, "display": code.upper()}], **meta})


def _codes(found: dict[str, Any], element: str, system: str) -> list[str]:
    return [c["code"] for c in found.get(element, []) if c.get("system") == system]


async def test_instance_meta_is_the_resources_own_meta(client: httpx.AsyncClient) -> None:
    system = f"urn:test:{unique()}"
    ident = await _create(client, _tagged(system, "a", profile=[CORE_PATIENT],
                                          security=[{"system": CONFIDENTIALITY, "code": "R"}]))
    found = _returned(await client.get(f"/fhir/Patient/{ident}/$meta"))
    assert found["profile"] == [CORE_PATIENT]
    assert found["tag"] == [{"system": system, "code": "a", "display": "A"}]
    assert found["security"] == [{"system": CONFIDENTIALITY, "code": "R"}]
    assert found["versionId"] == "1"


async def test_instance_meta_of_an_unknown_resource_is_404_and_of_a_deleted_one_410(
        client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/fhir/Patient/{unique()}/$meta")).status_code == 404
    ident = await _create(client, patient(unique()))
    assert (await client.delete(f"/fhir/Patient/{ident}")).status_code == 204
    assert (await client.get(f"/fhir/Patient/{ident}/$meta")).status_code == 410


async def test_type_meta_lists_each_tag_in_use_once_and_only_of_that_type(client: httpx.AsyncClient) -> None:
    system = f"urn:test:{unique()}"
    for code in ("b", "a", "b"):
        await _create(client, _tagged(system, code, profile=[CORE_PATIENT]))
    await _create(client, {"resourceType": "Organization", "name": "tagged",
                           "meta": {"tag": [{"system": system, "code": "organization-only"}]}})
    found = _returned(await client.get("/fhir/Patient/$meta"))
    assert _codes(found, "tag", system) == ["a", "b"]
    assert next(c for c in found["tag"] if c["system"] == system) == {"system": system, "code": "a", "display": "A"}
    assert CORE_PATIENT in found["profile"] and found["profile"] == sorted(found["profile"])
    assert found["tag"] == sorted(found["tag"], key=lambda c: (c.get("system", ""), c.get("code", "")))


async def test_system_meta_lists_the_tags_of_every_type(client: httpx.AsyncClient) -> None:
    system = f"urn:test:{unique()}"
    await _create(client, _tagged(system, "patient"))
    await _create(client, {"resourceType": "Organization", "name": "tagged",
                           "meta": {"tag": [{"system": system, "code": "organization"}]}})
    found = _returned(await client.post("/fhir/$meta"))
    assert _codes(found, "tag", system) == ["organization", "patient"]


async def test_a_deleted_resources_tags_are_no_longer_in_use(client: httpx.AsyncClient) -> None:
    system = f"urn:test:{unique()}"
    kept = await _create(client, _tagged(system, "kept"))
    gone = await _create(client, _tagged(system, "gone"))
    assert (await client.delete(f"/fhir/Patient/{gone}")).status_code == 204
    assert _codes(_returned(await client.get("/fhir/Patient/$meta")), "tag", system) == ["kept"]
    assert _codes(_returned(await client.get(f"/fhir/Patient/{kept}/$meta")), "tag", system) == ["kept"]


async def test_meta_is_in_the_capability_statement(client: httpx.AsyncClient) -> None:
    statement = parse(await client.get("/fhir/metadata"))
    system_operations = {o["name"]: o["definition"] for o in statement["rest"][0]["operation"]}
    assert system_operations["meta"] == "http://hl7.org/fhir/OperationDefinition/Resource-meta"
