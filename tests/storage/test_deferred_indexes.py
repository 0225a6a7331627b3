"""A collection of a type nobody has written yet is created, with its indexes, by the first transaction that
writes to it (ResourceStore.ensure_indexes ``eager``): a fresh database does not create 700 index tables for
types a deployment never holds, and no search ever runs against a collection that holds data without them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import AsyncMongoClient

from fhir_server.context import RequestContext
from fhir_server.storage.documents import ResourceWrite
from fhir_server.storage.store import ResourceStore

WILDCARD = [("sp.$**", 1)]


async def test_a_deferred_collection_gets_its_indexes_with_its_first_write(mongo_uri: str,
                                                                           mongo_client: AsyncMongoClient) -> None:
    name = f"deferred_{uuid.uuid4().hex[:8]}"
    store = ResourceStore.open(mongo_uri, name)
    try:
        specs = {kind: [(WILDCARD, {})] for kind in ("Patient", "Encounter")}
        await store.ensure_indexes(specs, eager=("Patient",))
        collections = set(await mongo_client[name].list_collection_names())
        assert "Patient" in collections and "Encounter" not in collections

        write = ResourceWrite(type="Encounter", id="e1", vid=1, last_updated=datetime.now(UTC), method="POST",
                              resource={"resourceType": "Encounter", "id": "e1", "status": "planned"})

        async def work(session):  # type: ignore[no-untyped-def]
            await store.apply(RequestContext(base_url="http://testserver/fhir"), [write], session)

        await store.run_transaction(work)
        keys = [dict(index["key"]) async for index in await mongo_client[name]["Encounter"].list_indexes()]
        assert dict(WILDCARD) in keys and {"lastUpdated": -1, "_id": 1} in keys
    finally:
        await store.close()
        await mongo_client.drop_database(name)
