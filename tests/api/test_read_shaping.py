"""``_summary`` and ``_elements`` on a read and a vread (https://hl7.org/fhir/R4/http.html#read: "the search
parameter _summary can be used when reading a resource ... The same applies to the _elements parameter"), shaped
as a search shapes its matches (search.html#summary, #elements) and marked SUBSETTED; and both on the types R4
has and R4B does not (``MedicinalProduct``), whose summary elements come from their R4 definition."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from fhir_server import fhirjson
from tests.conftest import DATA, parse, post, put, unique

SUBSETTED = "SUBSETTED"
PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "gender": "other", "birthDate": "1980-01-01",
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">pt</div>"},
    "contact": [{"gender": "male", "name": {"family": "Contact"}}],  # pat-1: a contact has details
}
CONTACT = PATIENT["contact"]


def tags(resource: dict[str, Any]) -> list[str]:
    return [t.get("code") for t in resource.get("meta", {}).get("tag", [])]


@pytest.fixture
async def stored_patient(client: httpx.AsyncClient) -> str:
    created = await post(client, "Patient", PATIENT)
    assert created.status_code == 201, created.text
    return str(parse(created)["id"])


async def read(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/{url}")
    assert response.status_code == 200, response.text
    return parse(response)  # type: ignore[no-any-return]


async def test_read_with_summary_true_keeps_the_summary_elements_and_is_marked_subsetted(
        client: httpx.AsyncClient, stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}?_summary=true")
    assert resource["gender"] == "other" and resource["birthDate"] == "1980-01-01"
    assert "text" not in resource and "contact" not in resource
    assert resource["id"] == stored_patient and resource["meta"]["versionId"] == "1"
    assert SUBSETTED in tags(resource)


async def test_summary_true_keeps_only_the_summary_elements_of_a_backbone_element(client: httpx.AsyncClient) -> None:
    """observation.html: component, component.code and component.value[x] are summary (Σ); component.interpretation
    and component.referenceRange are not. A datatype's own elements (the Quantity's unit) are kept whole."""
    component = {"code": {"text": "BCR-ABL1 IS"}, "valueQuantity": {"value": 0.1, "unit": "%"},
                 "interpretation": [{"text": "low"}], "referenceRange": [{"text": "< 0.1"}]}
    created = await post(client, "Observation", {"resourceType": "Observation", "status": "final",
                                                 "code": {"text": "panel"}, "component": [component]})
    resource = await read(client, f"Observation/{parse(created)['id']}?_summary=true")
    assert resource["component"] == [{"code": {"text": "BCR-ABL1 IS"},
                                      "valueQuantity": {"value": Decimal("0.1"), "unit": "%"}}]


async def test_capability_statement_with_summary_true_is_its_summary(client: httpx.AsyncClient) -> None:
    """capabilitystatement.html: rest.resource.type and .operation are summary, .searchParam and .interaction
    are not: the summary names what is served without the search parameters."""
    whole = await client.get("/fhir/metadata")
    summary = await client.get("/fhir/metadata?_summary=true")
    resource = parse(summary)
    assert SUBSETTED in tags(resource)
    patient = next(r for r in resource["rest"][0]["resource"] if r["type"] == "Patient")
    assert "searchParam" not in patient and "interaction" not in patient
    assert any(op["name"] == "everything" for op in patient["operation"])
    assert len(summary.content) * 5 < len(whole.content)  # 56 kB against 485 kB
    elements = await read(client, "metadata?_elements=fhirVersion")
    assert elements["fhirVersion"] == "4.0.1" and "rest" not in elements


async def test_read_with_summary_text_keeps_text_id_and_meta(client: httpx.AsyncClient, stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}?_summary=text")
    assert set(resource) == {"resourceType", "id", "meta", "text"}


async def test_read_with_summary_data_drops_only_the_text(client: httpx.AsyncClient, stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}?_summary=data")
    assert "text" not in resource and resource["contact"] == CONTACT
    assert SUBSETTED in tags(resource)


async def test_read_with_summary_false_is_the_whole_resource_unmarked(client: httpx.AsyncClient,
                                                                       stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}?_summary=false")
    assert resource["text"] == PATIENT["text"] and SUBSETTED not in tags(resource)


async def test_read_with_elements_keeps_those_elements_and_is_marked_subsetted(client: httpx.AsyncClient,
                                                                                 stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}?_elements=gender")
    assert set(resource) == {"resourceType", "id", "meta", "gender"}
    assert SUBSETTED in tags(resource)


async def test_vread_is_shaped_as_a_read(client: httpx.AsyncClient, stored_patient: str) -> None:
    resource = await read(client, f"Patient/{stored_patient}/_history/1?_elements=birthDate")
    assert set(resource) == {"resourceType", "id", "meta", "birthDate"}
    assert SUBSETTED in tags(resource)


async def test_a_shaped_read_keeps_the_versions_etag(client: httpx.AsyncClient, stored_patient: str) -> None:
    response = await client.get(f"/fhir/Patient/{stored_patient}?_summary=true")
    assert response.headers["ETag"] == 'W/"1"'


async def test_the_stored_resource_is_not_changed_by_a_shaped_read(client: httpx.AsyncClient,
                                                                   stored_patient: str) -> None:
    await read(client, f"Patient/{stored_patient}?_summary=text")
    whole = await read(client, f"Patient/{stored_patient}")
    assert whole["contact"] == CONTACT and SUBSETTED not in tags(whole)


@pytest.mark.parametrize("value", ["count", "maybe"])
async def test_a_summary_a_read_cannot_honour_is_400(client: httpx.AsyncClient, stored_patient: str,
                                                     value: str) -> None:
    response = await client.get(f"/fhir/Patient/{stored_patient}?_summary={value}")
    assert response.status_code == 400
    issue = parse(response)["issue"][0]
    assert issue["code"] == "invalid" and "_summary" in issue["diagnostics"]


async def test_a_type_r4b_lacks_is_shaped_from_its_r4_definition_in_a_read_and_a_search(
        client: httpx.AsyncClient) -> None:
    product = parse_example("MedicinalProduct-example.json")
    product["id"] = unique("mp-")
    stored = await put(client, f"MedicinalProduct/{product['id']}", product)
    assert stored.status_code == 201, stored.text
    summary = await read(client, f"MedicinalProduct/{product['id']}?_summary=true")
    # MedicinalProduct.name and .identifier are summary elements in R4; its narrative is not
    assert summary["name"] == product["name"] and summary["identifier"] == product["identifier"]
    assert "text" in product and "text" not in summary and SUBSETTED in tags(summary)
    bundle = await read(client, f"MedicinalProduct?_id={product['id']}&_elements=name")
    assert set(bundle["entry"][0]["resource"]) == {"resourceType", "id", "meta", "name"}


def parse_example(name: str) -> dict[str, Any]:
    return fhirjson.loads((DATA / "fhir-r4-examples-all" / name).read_bytes())  # type: ignore[no-any-return]
