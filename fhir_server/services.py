"""The long-lived objects an interaction works with, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.settings import Settings
from fhir_server.storage.client import connect
from fhir_server.storage.store import ResourceStore


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient
    store: ResourceStore
    search_parameters: SearchParameterRegistry

    def index_values(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Search index values of a resource, extracted at write time and stored with it."""
        return extract_index_values(self.search_parameters, resource)

    @classmethod
    async def start(cls, settings: Settings, uri: str) -> Services:
        client = connect(uri)
        store = ResourceStore(client[settings.mongodb_db])
        registry = SearchParameterRegistry.load_default()
        services = cls(settings, client, store, registry)
        await store.ensure_indexes({t: registry.index_specs(t) for t in SUPPORTED_TYPES})
        return services

    async def close(self) -> None:
        await self.client.close()
