"""Several server processes starting at once on a fresh database (``FHIR_WORKERS=2``, or several nodes): each
creates the collections and indexes idempotently, so none fails because another created them first."""

from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from fhir_server.bootstrap import search_indexes
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.settings import Settings
from fhir_server.storage.store import ResourceStore
from tests.conftest import unique


async def _start_later(store: ResourceStore, delay: float) -> None:
    await asyncio.sleep(delay)
    await store.ensure_indexes(search_indexes(SearchParameterRegistry.load_default()))


async def test_two_servers_creating_collections_and_indexes_together_on_a_fresh_database_both_start(
        settings: Settings, mongo_uri: str, mongo_client: AsyncMongoClient) -> None:
    # The race was lost about 1 time in 7 with two uvicorn workers; here each round starts the second process a
    # little later, so that one's check and create fall between the other's.
    for round_ in range(6):
        database = unique("start_race_")
        stores = [ResourceStore.open(mongo_uri, database) for _ in range(2)]
        try:
            await asyncio.wait_for(asyncio.gather(_start_later(stores[0], 0), _start_later(stores[1], 0.004 * round_)),
                                   timeout=120)
            assert "SearchParameter" in await mongo_client[database].list_collection_names()
        finally:
            for store in stores:
                await store.close()
            await mongo_client.drop_database(database)
