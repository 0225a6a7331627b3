"""Pure terminology services over CodeSystem, ValueSet and ConceptMap resources.

https://hl7.org/fhir/R4/terminology-service.html -- storage and HTTP live elsewhere.
"""

from fhir_server.terminology.codesystem import CodeSystemIndex, Concept
from fhir_server.terminology.conceptmap import Match, translate
from fhir_server.terminology.service import CodeValidation, Lookup, Terminology, split_canonical
from fhir_server.terminology.valueset import ExpansionError, Membership

__all__ = [
    "CodeSystemIndex", "CodeValidation", "Concept", "ExpansionError", "Lookup", "Match", "Membership",
    "Terminology", "split_canonical", "translate",
]
