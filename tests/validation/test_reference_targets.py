"""Reference target types of the core definitions (https://hl7.org/fhir/R4/references.html): a table derived by
hand from the R4 StructureDefinitions (Observation.subject: Patient | Group | Device | Location; Identifier.assigner:
Organization; Observation.focus: any resource), and what the server does with a reference of another type: a
warning, as HL7's own examples hold five such references and load unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.validation.reference_targets import reference_target_issues
from tests.all_types.examples import example_files, load
from tests.conftest import post

OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "BCR-ABL1"}}


def _observation(**elements: Any) -> dict[str, Any]:
    return {**OBSERVATION, **elements}


@pytest.mark.parametrize(("resource", "flagged"), [
    (_observation(subject={"reference": "Patient/p1"}), []),
    (_observation(subject={"reference": "Group/g1"}), []),
    (_observation(subject={"reference": "Observation/o1"}), ["Observation.subject.reference"]),
    (_observation(subject={"reference": "https://other.example/fhir/Medication/m1/_history/2"}),
     ["Observation.subject.reference"]),
    (_observation(subject={"reference": "urn:uuid:0b3c1bc6-8a3c-4e8c-9bd5-0d6c0f1f3a55"}), []),  # no type
    (_observation(subject={"reference": "#p"}), []),  # contained: no type in the reference
    (_observation(subject={"identifier": {"value": "x"}}), []),  # logical
    (_observation(focus=[{"reference": "Medication/m1"}]), []),  # focus: any resource
    (_observation(performer=[{"reference": "Practitioner/a"}, {"reference": "Encounter/e"}]),
     ["Observation.performer[1].reference"]),
    (_observation(identifier=[{"value": "1", "assigner": {"reference": "Patient/p1"}}]),
     ["Observation.identifier[0].assigner.reference"]),  # inside a datatype
    (_observation(component=[{"code": {"text": "x"}, "valueString": "y"}]), []),
    (_observation(contained=[{"resourceType": "Observation", "id": "c", "status": "final", "code": {"text": "x"},
                              "encounter": {"reference": "Patient/p1"}}]),
     ["Observation.contained[0].encounter.reference"]),
    (_observation(subject={"reference": "Observation/o1", "identifier": {"value": "1",
                                                                        "assigner": {"reference": "Group/g"}}}),
     ["Observation.subject.reference", "Observation.subject.identifier.assigner.reference"]),
])
def test_reference_of_a_type_its_element_does_not_name_is_a_warning(resource: dict[str, Any],
                                                                     flagged: list[str]) -> None:
    issues = reference_target_issues(resource)
    assert [i.expression[0] for i in issues] == flagged
    assert all(i.severity == "warning" for i in issues)


def test_the_official_examples_flagged_are_the_five_hl7_published() -> None:
    flagged = sorted(name for name in example_files() if reference_target_issues(load(name)))
    assert flagged == ["DeviceMetric-example.json", "DeviceUseStatement-example.json",
                       "MedicationRequest-medrx0301.json", "Observation-clinical-gender.json",
                       "OrganizationAffiliation-orgrole1.json"]


async def test_a_write_with_such_a_reference_is_stored_and_answered_with_the_warning(
        client: httpx.AsyncClient) -> None:
    r = await post(client, "Observation", _observation(subject={"reference": "Observation/o1"}),
                   Prefer="return=OperationOutcome")
    assert r.status_code == 201
    issue = r.json()["issue"][0]
    assert (issue["severity"], issue["expression"]) == ("warning", ["Observation.subject.reference"])
    validated = await post(client, "Observation/$validate", _observation(subject={"reference": "Observation/o1"}))
    assert any(i["severity"] == "warning" and i["expression"] == ["Observation.subject.reference"]
               for i in validated.json()["issue"])
