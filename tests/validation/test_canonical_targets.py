"""The types a canonical element may name (references.html#canonical), as a table derived by hand from the core
definitions' target profiles; the lookup stands for the definitions a server holds."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.validation.canonical_targets import canonical_target_issues
from fhir_server.validation.conformance import ConformanceSnapshot

KNOWN = ConformanceSnapshot([])  # R4's own definitions: value sets, code systems, StructureDefinitions
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
PATIENT_SD = "http://hl7.org/fhir/StructureDefinition/Patient"


@pytest.mark.parametrize(("resource", "expected"), [
    # HL7's validator suite, qr-bad-ref2: a QuestionnaireResponse answering one of R4's value sets
    ({"resourceType": "QuestionnaireResponse", "status": "completed",
      "questionnaire": "http://hl7.org/fhir/ValueSet/example-extensional"}, ["QuestionnaireResponse.questionnaire"]),
    ({"resourceType": "QuestionnaireResponse", "status": "completed",
      "questionnaire": "http://example.org/Questionnaire/unknown"}, []),  # unknown: not judged
    ({"resourceType": "Patient", "meta": {"profile": [PATIENT_SD, f"{GENDER_VS}|4.0.1"]}},
     ["Patient.meta.profile[1]"]),
    # a value set including a code system where a value set is named, and the code system where it belongs
    ({"resourceType": "ValueSet", "status": "draft", "compose": {"include": [{"valueSet": [GENDER_CS]}]}},
     ["ValueSet.compose.include[0].valueSet[0]"]),
    ({"resourceType": "ValueSet", "status": "draft", "compose": {"include": [{"system": GENDER_CS,
                                                                              "valueSet": [GENDER_VS]}]}}, []),
    # inside a contained resource and a Bundle's entry; a fragment is not judged
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"}, "meta": {"profile": [GENDER_CS]}}}]},
     ["Bundle.entry[0].resource.meta.profile[0]"]),
    ({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "#q"}, []),
])
def test_a_canonical_names_a_definition_of_a_type_its_element_allows(resource: dict[str, Any],
                                                                    expected: list[str]) -> None:
    issues = canonical_target_issues(resource, KNOWN.kind_of)
    assert [i.expression[0] for i in issues] == expected
    assert all(i.severity == "error" for i in issues)
