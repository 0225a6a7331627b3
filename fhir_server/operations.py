"""The registry of FHIR operations ($name) the server offers; the API routes and the CapabilityStatement
are both generated from it, so the statement lists exactly what is served.

https://hl7.org/fhir/R4/operations.html
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.context import RequestContext


@dataclass
class OperationRequest:
    name: str
    level: str  # system | type | instance
    resource_type: str | None
    resource_id: str | None
    method: str
    params: list[tuple[str, str]]
    body: Any  # parsed JSON (e.g. a Parameters resource) or None
    headers: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None  # an instance operation on one version: [type]/[id]/_history/[vid]/$name

    def parameters(self) -> list[dict[str, Any]]:
        """The ``parameter`` entries of a Parameters body (those that are objects; none for another body)."""
        if isinstance(self.body, dict) and self.body.get("resourceType") == "Parameters":
            entries = self.body.get("parameter")
            if isinstance(entries, list):
                return [p for p in entries if isinstance(p, dict)]
        return []

    def raw_param(self, name: str) -> Any:
        """A parameter from the query string (text), or from a Parameters body (its valueX as is)."""
        for key, value in self.params:
            if key == name:
                return value
        for p in self.parameters():
            if p.get("name") == name:
                for key, value in p.items():
                    if key.startswith("value"):
                        return value
        return None

    def param(self, name: str) -> str | None:
        """A parameter from the query string, or from a Parameters body (valueX as text)."""
        value = self.raw_param(name)
        return None if value is None else str(value)

    def resource_param(self, name: str) -> dict[str, Any] | None:
        for p in self.parameters():
            if p.get("name") == name and isinstance(p.get("resource"), dict):
                return dict(p["resource"])
        return None


@dataclass
class OperationResponse:
    status: int = 200
    body: Any = None  # a dict (FHIR JSON) or bytes
    media_type: str = "application/fhir+json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[RequestContext, Any, OperationRequest], Awaitable[OperationResponse]]


@dataclass(frozen=True)
class OperationSpec:
    name: str  # without the $
    handler: Handler
    levels: frozenset[str]  # subset of {"system", "type", "instance"}
    types: frozenset[str] | None = None  # None: every supported type (for type/instance levels)
    methods: frozenset[str] = frozenset({"GET", "POST"})
    definition: str | None = None  # canonical URL of the OperationDefinition
    documentation: str = ""
    on_versions: bool = False  # also on [type]/[id]/_history/[vid] (e.g. $meta); other operations: 404 there

    def applies(self, level: str, resource_type: str | None, method: str) -> bool:
        if level not in self.levels or method not in self.methods:
            return False
        return level == "system" or self.types is None or resource_type in self.types


class OperationRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, list[OperationSpec]] = {}

    def register(self, spec: OperationSpec) -> None:
        self._by_name.setdefault(spec.name, []).append(spec)

    def find(self, name: str, level: str, resource_type: str | None, method: str) -> OperationSpec | None:
        for spec in self._by_name.get(name, []):
            if spec.applies(level, resource_type, method):
                return spec
        return None

    def known(self, name: str) -> bool:
        return name in self._by_name

    def all(self) -> list[OperationSpec]:
        return [spec for specs in self._by_name.values() for spec in specs]
