"""Who calls: the caller's identity, role and center, as every layer sees it (issue #11).

The roles are the registry's (README, "Authentication"): an ``ehr`` client works on its own center's data, a
``researcher`` reads everything and writes nothing, a ``maintainer`` writes the implementation guide's
conformance resources, an ``admin`` does everything. ``system`` is the server's own work (start-up loading,
reindex, CLI) and every request in ``FHIR_AUTH_MODE=none``. This module is the lowest layer: storage applies
the access rules from it, api/ builds it from a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# The implementation guide's resource types: what a ``maintainer`` works on. They belong to no center (every
# caller reads them) and hold no clinical data (storage/centers.py).
CONFORMANCE_TYPES = (
    "StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap", "SearchParameter", "ImplementationGuide",
    "OperationDefinition",
)


class Role(StrEnum):
    SYSTEM = "system"
    ADMIN = "admin"
    EHR = "ehr"
    RESEARCHER = "researcher"
    MAINTAINER = "maintainer"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a client of the clients file, a user of an identity provider, or the system."""

    id: str
    role: Role
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({"system/*.*"}))
    center: str | None = None  # the center code (e.g. FR-POI) of an ``ehr`` caller

    @classmethod
    def system(cls) -> Caller:
        return cls(id="system", role=Role.SYSTEM)
