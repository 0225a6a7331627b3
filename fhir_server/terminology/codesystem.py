"""One CodeSystem resource as an index: concepts, is-a hierarchy, lookup.

The hierarchy comes from nested ``concept.concept`` and from ``parent``/``child`` concept properties
(https://hl7.org/fhir/R4/codesystem.html#hierarchy, codesystem-concept-properties). Closures are computed once
per code and cached: the search engine's ``:below``/``:above`` modifiers and the validator's ``is-a`` filters
call them on every request (https://hl7.org/fhir/R4/search.html#modifiers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.json_types import Json


@dataclass
class Concept:
    """One concept of a code system, with its direct hierarchy links."""

    code: str
    display: str | None = None
    definition: str | None = None
    designations: list[Json] = field(default_factory=list)
    properties: dict[str, list[Any]] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    @property
    def abstract(self) -> bool:
        """notSelectable: the concept groups others and is not meant to be used in data."""
        return any(v is True for v in self.properties.get("notSelectable", []))

    @property
    def inactive(self) -> bool:
        status = self.properties.get("status", [])
        return any(v is True for v in self.properties.get("inactive", [])) or "retired" in status


def _property_value(prop: Json) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


class CodeSystemIndex:
    """Concepts of one CodeSystem by code, with cached is-a closures."""

    def __init__(self, resource: Json) -> None:
        self.resource = resource
        self.url: str = resource.get("url", "")
        self.version: str | None = resource.get("version")
        self.case_sensitive: bool = resource.get("caseSensitive", True)
        self.concepts: dict[str, Concept] = {}
        self._add(resource.get("concept", []), None)
        self._link_properties()
        self._folded = None if self.case_sensitive else {c.lower(): c for c in self.concepts}
        self._below: dict[str, frozenset[str]] = {}
        self._above: dict[str, frozenset[str]] = {}

    @property
    def complete(self) -> bool:
        """Whether the resource lists every concept (content = complete), so absent codes are invalid."""
        return self.resource.get("content", "complete") == "complete"

    def _add(self, concepts: list[Json], parent: str | None) -> None:
        for c in concepts:
            concept = Concept(c["code"], c.get("display"), c.get("definition"),
                              list(c.get("designation", [])))
            for prop in c.get("property", []):
                concept.properties.setdefault(prop["code"], []).append(_property_value(prop))
            if parent is not None:
                concept.parents.append(parent)
                self.concepts[parent].children.append(concept.code)
            self.concepts[concept.code] = concept
            self._add(c.get("concept", []), concept.code)

    def _link_properties(self) -> None:
        """``parent``/``child`` properties add hierarchy links next to nesting."""
        for concept in list(self.concepts.values()):
            for parent in concept.properties.get("parent", []):
                if parent in self.concepts and parent not in concept.parents:
                    concept.parents.append(parent)
                    self.concepts[parent].children.append(concept.code)
            for child in concept.properties.get("child", []):
                if child in self.concepts and concept.code not in self.concepts[child].parents:
                    self.concepts[child].parents.append(concept.code)
                    concept.children.append(child)

    def get(self, code: str) -> Concept | None:
        """The concept for ``code`` (case-insensitively when the system says so)."""
        concept = self.concepts.get(code)
        if concept is None and self._folded is not None:
            canonical = self._folded.get(code.lower())
            concept = self.concepts.get(canonical) if canonical else None
        return concept

    def __contains__(self, code: str) -> bool:
        return self.get(code) is not None

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts.values())

    def descendants(self, code: str) -> frozenset[str]:
        """Codes strictly below ``code`` (transitive); empty for unknown codes."""
        concept = self.get(code)
        if concept is None:
            return frozenset()
        if concept.code not in self._below:
            self._below[concept.code] = self._closure(concept.code, "children")
        return self._below[concept.code]

    def ancestors(self, code: str) -> frozenset[str]:
        """Codes strictly above ``code`` (transitive); empty for unknown codes."""
        concept = self.get(code)
        if concept is None:
            return frozenset()
        if concept.code not in self._above:
            self._above[concept.code] = self._closure(concept.code, "parents")
        return self._above[concept.code]

    def _closure(self, code: str, direction: str) -> frozenset[str]:
        seen: set[str] = set()
        todo = list(getattr(self.concepts[code], direction))
        while todo:
            current = todo.pop()
            if current in seen or current == code:
                continue  # cycles in a hierarchy are invalid, but must not hang the server
            seen.add(current)
            todo.extend(getattr(self.concepts[current], direction))
        return frozenset(seen)

    def subsumes(self, a: str, b: str) -> str:
        """$subsumes outcome of ``a`` vs ``b``: equivalent | subsumes | subsumed-by | not-subsumed."""
        ca, cb = self.get(a), self.get(b)
        if ca is None or cb is None:
            missing = a if ca is None else b
            raise KeyError(f"unknown code '{missing}' in {self.url}")
        if ca.code == cb.code:
            return "equivalent"
        if cb.code in self.descendants(ca.code):
            return "subsumes"
        if ca.code in self.descendants(cb.code):
            return "subsumed-by"
        return "not-subsumed"
