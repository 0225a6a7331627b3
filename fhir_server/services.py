"""The long-lived objects an interaction works with, built once per process by the composition root
(``fhir_server.bootstrap.start_services``). This container imports no interaction or operation module: every
layer above may depend on it (see ``[tool.importlinter]`` in pyproject.toml)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fhir_server.conformance import ConformanceCache
from fhir_server.errors import FhirError
from fhir_server.operations import OperationRegistry
from fhir_server.resources import AUDIT_EVENT
from fhir_server.search import audit_values
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.security.authority import Authority
from fhir_server.settings import Settings
from fhir_server.storage.audit_log import AuditLog
from fhir_server.storage.store import DbSession, ResourceStore

log = logging.getLogger(__name__)


def registry_with(search_parameters: list[dict[str, Any]]) -> SearchParameterRegistry:
    """The R4 parameters plus stored ones; a stored definition that cannot be used is skipped and logged
    (one bad resource must not stop the server from starting)."""
    registry = SearchParameterRegistry.load_default()
    for resource in search_parameters:
        try:
            registry.add_or_replace(resource)
        except FhirError as exc:
            log.error("SearchParameter %s is not usable and was skipped: %s", resource.get("url"), exc)
    return registry


@dataclass
class Services:
    settings: Settings
    store: ResourceStore
    search_parameters: SearchParameterRegistry
    conformance: ConformanceCache
    operations: OperationRegistry = field(default_factory=OperationRegistry)
    rules: list[dict[str, Any]] = field(default_factory=list)
    # Checks run on every validated write besides profiles (e.g. risk scores): (uow, resource, resolve) -> issues
    write_checks: list[Any] = field(default_factory=list)
    # Tokens and clients (FHIR_AUTH_MODE=smart); None when every caller is the system (FHIR_AUTH_MODE=none)
    authority: Authority | None = None
    audit_log: AuditLog | None = None  # where AuditEvents go (None: FHIR_AUDIT_ENABLED=false)
    _search_epoch: tuple[int, str] | None = None
    _search_versions: frozenset[tuple[Any, Any]] | None = None

    def index_values(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Search index values of a resource, extracted at write time and stored with it (an AuditEvent the server
        recorded without FHIRPath: ``search.audit_values``)."""
        if resource.get("resourceType") == AUDIT_EVENT and audit_values.applies(self.search_parameters, resource):
            return audit_values.index_values(self.search_parameters, resource)
        return extract_index_values(self.search_parameters, resource)

    async def after_commit(self, results: Any) -> None:
        """Committed SearchParameter changes take effect at once for this process's next writes and searches
        (other processes pick them up through the conformance epoch, see ``sync_conformance``)."""
        items = results if isinstance(results, list) else [results]
        if any(getattr(getattr(r, "version", None), "type", None) == "SearchParameter" for r in items):
            await self.sync_conformance()

    async def sync_conformance(self, session: DbSession | None = None, epoch: tuple[int, str] | None = None) -> bool:
        """Bring the cached conformance resources and the search parameter registry up to the epoch in the
        database (it moves with every conformance write of any process), or to ``epoch`` when the caller read it
        in ``session`` already. True when the registry changed."""
        await self.conformance.refresh(session, epoch)
        if self._search_epoch == self.conformance.epoch:
            return False
        self._search_epoch = self.conformance.epoch
        stored = self.conformance.resources("SearchParameter")
        versions = frozenset((r.get("id"), (r.get("meta") or {}).get("versionId")) for r in stored)
        if versions == self._search_versions:  # a ValueSet or profile changed, not a SearchParameter
            return False
        self.search_parameters = registry_with(stored)
        self._search_versions = versions
        return True

    async def reload_search_parameters(self) -> None:
        """Rebuild the registry from the database now (after a wipe in tests, or a re-index)."""
        self._search_epoch = None
        self._search_versions = None
        await self.sync_conformance()

    async def close(self) -> None:
        """Write the AuditEvents still queued (nothing is lost on a clean shutdown), then disconnect."""
        if self.audit_log is not None:
            await self.audit_log.close()
        if self.authority is not None:
            await self.authority.close()
        await self.store.close()
