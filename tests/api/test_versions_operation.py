"""``$versions`` (https://hl7.org/fhir/R4/capabilitystatement-operation-versions.html): the versions the endpoint
speaks (``version`` 1..*) and its default (``default`` 1..1), major.minor, as a Parameters."""

from __future__ import annotations

import httpx

from tests.conftest import parse


async def test_versions_lists_r4_as_the_one_version_and_the_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/$versions")
    assert response.status_code == 200, response.text
    assert parse(response) == {"resourceType": "Parameters", "parameter": [
        {"name": "version", "valueCode": "4.0"}, {"name": "default", "valueCode": "4.0"}]}


async def test_versions_answers_in_xml_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/$versions", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert '<valueCode value="4.0"/>' in response.text


async def test_every_version_listed_is_one_the_server_takes(client: httpx.AsyncClient) -> None:
    listed = [p["valueCode"] for p in parse(await client.get("/fhir/$versions"))["parameter"]]
    for version in listed:
        accepted = await client.get("/fhir/metadata?_summary=true",
                                    headers={"Accept": f"application/fhir+json; fhirVersion={version}"})
        assert accepted.status_code == 200, version
    refused = await client.get("/fhir/metadata?_summary=true",
                               headers={"Accept": "application/fhir+json; fhirVersion=3.0"})
    assert refused.status_code == 406


async def test_versions_is_a_get_operation_of_the_system(client: httpx.AsyncClient) -> None:
    assert (await client.post("/fhir/$versions")).status_code == 405
    assert (await client.get("/fhir/Patient/$versions")).status_code == 405  # a system operation only
    statement = parse(await client.get("/fhir/metadata"))
    [listed] = [op for op in statement["rest"][0]["operation"] if op["name"] == "versions"]
    assert listed["definition"] == "http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions"
