"""The FHIR R4 model as FHIRPath navigation needs it: which elements are choices, and what type each element has.

Spec: https://hl7.org/fhir/R4/formats.html#choice (a choice element ``value[x]`` is ``valueQuantity`` in JSON) and
https://hl7.org/fhirpath/N1/#paths-and-polymorphic-items. The data is fhirpathpy's R4 model (generated from the R4
definitions), and paths are resolved as fhirpathpy resolves them, so the native evaluator and the fhirpathpy
fallback navigate alike: ``Observation.code`` has type ``CodeableConcept``; ``Observation.component`` (a
backbone element) keeps its path; ``MedicationStatement.dosage.doseAndRate.dose`` is the choice
``Dosage.doseAndRate.dose``.
"""

from __future__ import annotations

from typing import Any

from fhirpathpy.models import models

R4_MODEL: dict[str, Any] = models["r4"]
_CHOICES: dict[str, list[str]] = R4_MODEL["choiceTypePaths"]
_DEFINED_ELSEWHERE: dict[str, str] = R4_MODEL["pathsDefinedElsewhere"]
_TYPES: dict[str, str] = R4_MODEL["path2Type"]
# Suffixes of choice-type JSON names (``valueQuantity``, ``onsetDateTime``): every type a choice element can take.
CHOICE_SUFFIXES = frozenset(suffix for suffixes in _CHOICES.values() for suffix in suffixes)


def child_path(parent: str, name: str) -> str:
    """The model path of element ``name`` of an item of path (or type) ``parent``."""
    path = f"{parent}.{name}"
    return _DEFINED_ELSEWHERE.get(path, path)


def choice_types(path: str) -> tuple[str, ...]:
    """The JSON suffixes of a choice element (``('Quantity', 'CodeableConcept', ...)``); () if not a choice."""
    return tuple(_CHOICES.get(path, ()))


def element_type(path: str, name: str) -> str:
    """The type (or, for a backbone element, the path) of the items at ``path``, the path of element ``name``;
    for a choice element, ``path`` is the JSON name's path (``Observation.valueQuantity``)."""
    if name == "extension":
        return "Extension"
    return _TYPES.get(path, path)
