"""The long-lived objects an interaction works with, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient

from fhir_server.conformance import ConformanceCache
from fhir_server.context import RequestContext
from fhir_server.operations import OperationRegistry
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.settings import Settings
from fhir_server.storage.client import connect
from fhir_server.storage.store import ResourceStore
from fhir_server.validation.rules import load_rules


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient
    store: ResourceStore
    search_parameters: SearchParameterRegistry
    conformance: ConformanceCache
    operations: OperationRegistry = field(default_factory=OperationRegistry)
    rules: list[dict[str, Any]] = field(default_factory=list)
    # Checks run on every validated write besides profiles (e.g. risk scores): (uow, resource, resolve) -> issues
    write_checks: list[Any] = field(default_factory=list)

    def index_values(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Search index values of a resource, extracted at write time and stored with it."""
        return extract_index_values(self.search_parameters, resource)

    async def after_commit(self, results: Any) -> None:
        """Committed SearchParameter changes take effect for this process's next writes and searches."""
        items = results if isinstance(results, list) else [results]
        if any(getattr(getattr(r, "version", None), "type", None) == "SearchParameter" for r in items):
            await self.reload_search_parameters()

    async def reload_search_parameters(self) -> None:
        registry = SearchParameterRegistry.load_default()
        for doc in await self.store.find(RequestContext.system(), "SearchParameter", {}):
            registry.add_or_replace(doc["resource"])
        self.search_parameters = registry

    @classmethod
    async def start(cls, settings: Settings, uri: str) -> Services:
        client = connect(uri)
        store = ResourceStore(client[settings.mongodb_db])
        services = cls(settings, client, store, SearchParameterRegistry.load_default(), ConformanceCache(store),
                       rules=load_rules(settings.profiles_dir / "rules.json"))
        await services.reload_search_parameters()
        registry = services.search_parameters
        await store.ensure_indexes({t: registry.index_specs(t) for t in SUPPORTED_TYPES})
        from fhir_server.interactions.catalog import register_operations, write_checks
        from fhir_server.profiles_loader import load_profiles

        register_operations(services.operations)
        services.write_checks = write_checks()
        await load_profiles(services)
        return services

    async def close(self) -> None:
        await self.client.close()
