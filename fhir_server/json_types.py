"""The one name for a JSON object as parsed from FHIR JSON (:mod:`fhir_server.fhirjson`): a resource, a
datatype value, a bundle entry...; and the one walk for the references such a value holds."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def reference_strings(node: Any) -> list[str]:
    """Every ``Reference.reference`` string in ``node`` (https://hl7.org/fhir/R4/references.html), contained
    resources included, in no particular order. Only objects and arrays are descended into: a step per scalar was
    most of a walk's cost, and writes walk every resource several times (references, centers, the bulk loader)."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str):
                    if key == "reference":
                        found.append(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found
