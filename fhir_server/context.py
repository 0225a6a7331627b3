"""The request context every interaction receives: who calls, with which scopes, for which center."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.permissions import Caller, Role


@dataclass(frozen=True)
class RequestContext:
    base_url: str  # e.g. http://127.0.0.1:8080/fhir, no trailing slash
    caller: str = "anonymous"
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({"system/*.*"}))
    center: str | None = None  # center code (e.g. FR-POI) when the caller is scoped to one center
    role: Role = Role.SYSTEM
    handling_strict: bool = False  # Prefer: handling=strict
    client_address: str | None = None  # the client's network address (its AuditEvents' agent.network)

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url, *parts])

    @classmethod
    def for_caller(cls, base_url: str, caller: Caller, *, handling_strict: bool = False,
                   client_address: str | None = None) -> RequestContext:
        return cls(base_url=base_url, caller=caller.id, scopes=caller.scopes, center=caller.center,
                   role=caller.role, handling_strict=handling_strict, client_address=client_address)

    @classmethod
    def system(cls, base_url: str = "http://localhost/fhir") -> RequestContext:
        """A context for the server's own work (start-up loading, reindex, CLI)."""
        return cls(base_url=base_url, caller="system")
