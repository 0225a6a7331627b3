"""Element ids unique within their resource (element-definitions.html#Element.id), as a table derived by hand; the
HTTP side is in tests/api/test_core_invariants_http.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation.element_ids import duplicate_element_ids

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fhir-r4-examples-all"
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'


@pytest.mark.parametrize(("resource", "expected"), [
    # HL7's validator suite, patient-dupl-id-2: the resource's logical id is not an element id
    ({"resourceType": "Patient", "id": "p", "text": {"id": "p", "status": "generated", "div": DIV},
      "_active": {"id": "a"}, "active": False}, []),
    # patient-dupl-id-1: the narrative and the primitive share one id
    ({"resourceType": "Patient", "id": "p", "text": {"id": "p", "status": "generated", "div": DIV},
      "_active": {"id": "p"}, "active": False}, ["Patient.active"]),
    ({"resourceType": "Patient", "name": [{"id": "n", "family": "A"}, {"id": "n", "family": "B"}]},
     ["Patient.name[1]"]),
    ({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [{"id": "g"}, {"id": "g"}]}]},
     ["Patient.name[0].given[1]"]),
    # a contained resource is a resource of its own: its element ids may repeat the container's
    ({"resourceType": "Observation", "status": "final", "code": {"id": "c", "text": "x"},
      "subject": {"reference": "#p"},
      "contained": [{"resourceType": "Patient", "id": "p", "name": [{"id": "c", "family": "A"}]}]}, []),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "#p"},
      "contained": [{"resourceType": "Patient", "id": "p", "name": [{"id": "c"}, {"id": "c"}]}]},
     ["Observation.contained[0].name[1]"]),
    # a StructureDefinition's element definitions carry their ids in the snapshot and again in the differential
    ({"resourceType": "StructureDefinition", "snapshot": {"element": [{"id": "Patient", "path": "Patient"}]},
      "differential": {"element": [{"id": "Patient", "path": "Patient"}]}}, []),
])
def test_an_element_id_is_unique_within_its_resource(resource: dict[str, Any], expected: list[str]) -> None:
    issues = duplicate_element_ids(resource)
    assert [i.expression[0] for i in issues] == expected
    assert all(i.severity == "error" and "already used" in i.diagnostics for i in issues)


def test_no_official_example_repeats_an_element_id() -> None:
    repeating = [p.name for p in sorted(EXAMPLES.glob("*.json")) if duplicate_element_ids(json.loads(p.read_text()))]
    assert repeating == []
