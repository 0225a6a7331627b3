"""The long-lived objects an interaction works with, built once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from fhir_server.conformance import ConformanceCache
from fhir_server.errors import FhirError
from fhir_server.operations import OperationRegistry
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.settings import Settings
from fhir_server.storage.store import IndexSpecs, ResourceStore
from fhir_server.validation.rules import load_rules

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


def rule_table(profiles_dir: Path, enforced: bool) -> list[dict[str, Any]]:
    """The registry's rule table. Without it a server meant to enforce it refuses to start (it would accept
    anything silently); a plain FHIR server (FHIR_REGISTRY_RULES=false) only warns."""
    path = profiles_dir / "rules.json"
    if not path.is_file():
        if enforced:
            raise RuntimeError(f"No rule table at {path.resolve()}: start the server in the repository's folder "
                               "or set FHIR_PROFILES_DIR to its profiles/ (FHIR_REGISTRY_RULES=false: no rules)")
        log.warning("No rule table at %s: no profile is required of any resource (set FHIR_PROFILES_DIR)", path)
        return []
    return load_rules(path)


def search_indexes(registry: SearchParameterRegistry) -> IndexSpecs:
    """The search indexes of every resource collection, as the registry declares them."""
    return {kind: [(keys, registry.index_options(keys)) for keys in registry.index_specs(kind)]
            for kind in SUPPORTED_TYPES}


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
    _search_epoch: tuple[int, str] | None = None
    _search_versions: frozenset[tuple[Any, Any]] | None = None

    def index_values(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Search index values of a resource, extracted at write time and stored with it."""
        return extract_index_values(self.search_parameters, resource)

    async def after_commit(self, results: Any) -> None:
        """Committed SearchParameter changes take effect at once for this process's next writes and searches
        (other processes pick them up through the conformance epoch, see ``sync_conformance``)."""
        items = results if isinstance(results, list) else [results]
        if any(getattr(getattr(r, "version", None), "type", None) == "SearchParameter" for r in items):
            await self.sync_conformance()

    async def sync_conformance(self, session: AsyncClientSession | None = None) -> bool:
        """Bring the cached conformance resources and the search parameter registry up to the epoch in the
        database (it moves with every conformance write of any process). True when the registry changed."""
        await self.conformance.refresh(session)
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

    @classmethod
    async def start(cls, settings: Settings, uri: str) -> Services:
        rules = rule_table(settings.profiles_dir, settings.registry_rules)
        store = ResourceStore.open(uri, settings.mongodb_db)
        services = cls(settings, store, SearchParameterRegistry.load_default(), ConformanceCache(store),
                       rules=rules)
        await services.reload_search_parameters()
        registry = services.search_parameters
        await store.ensure_indexes(search_indexes(registry))
        from fhir_server.interactions.catalog import register_operations, write_checks
        from fhir_server.profiles_loader import load_profiles

        register_operations(services.operations)
        services.write_checks = write_checks()
        await load_profiles(services)
        return services

    async def close(self) -> None:
        await self.store.close()
