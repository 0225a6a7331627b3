"""The background writer of reads' AuditEvents (``storage/audit_log.py``): it writes in inserts of bounded size (a
few events of large search pages, or many small events), so that a request arriving meanwhile waits for one slice
at most while each insert's fixed cost is shared, and an event MongoDB refuses never holds back the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from fhir_server.context import RequestContext
from fhir_server.interactions.audit_event import Asked, event, patient_entity, query_entity
from fhir_server.permissions import Caller, Role
from fhir_server.search import audit_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage.audit_log import EVENT_WEIGHT, INSERT_SLICE, INSERT_WEIGHT, AuditLog
from fhir_server.storage.documents import now_ms
from tests.conftest import unique

BASE = "http://testserver/fhir"
RESEARCHER = RequestContext.for_caller(BASE, Caller(id="research-1", role=Role.RESEARCHER))
REFUSED_OUTCOME = "8"  # the collection's validator below refuses events with this outcome


class CountingCollection:
    """A real collection that remembers how many documents each ``insert_many`` carried."""

    def __init__(self, collection: AsyncCollection) -> None:
        self.collection = collection
        self.inserts: list[int] = []

    async def insert_many(self, documents: list[dict[str, Any]], **options: Any) -> Any:
        self.inserts.append(len(documents))
        return await self.collection.insert_many(documents, **options)


@pytest.fixture
async def collection(db: AsyncDatabase) -> AsyncIterator[CountingCollection]:
    name = unique("audit-writer-")
    await db.create_collection(name, validator={"resource.outcome": {"$ne": REFUSED_OUTCOME}})
    yield CountingCollection(db[name])
    await db.drop_collection(name)


def search_event(patients: int, status: int = 200) -> dict[str, Any]:
    """The event of a search whose page holds ``patients`` patients (``status`` 500: outcome 8)."""
    asked = Asked("GET", "Observation?code=x", "search-type", "E", "Observation", query=True)
    entities = [query_entity(asked.url), *(patient_entity(f"Patient/{unique('p')}") for _ in range(patients))]
    return event("ifp-fhir", RESEARCHER, BASE, asked, status, entities, now_ms())


def writer(collection: CountingCollection) -> AuditLog:
    registry = SearchParameterRegistry.load_default()
    return AuditLog(collection, lambda resource: audit_values.index_values(registry, resource),  # type: ignore[arg-type]
                    batch_size=100_000, interval=3600)


async def test_queued_events_are_written_in_inserts_of_at_most_one_slice(collection: CountingCollection) -> None:
    log = writer(collection)
    large = [search_event(patients=100) for _ in range(13)]  # events of full search pages
    small = [search_event(patients=1) for _ in range(2 * INSERT_SLICE + 5)]  # a read's event is as small
    for resource in [*large, *small]:
        log.record(resource, now_ms())
    await log.close()
    assert await collection.collection.count_documents({}) == len(large) + len(small)
    assert sum(collection.inserts) == len(large) + len(small)
    per_large_insert = -(-INSERT_WEIGHT // (EVENT_WEIGHT + 101))  # a query entity and 100 patients
    assert collection.inserts[:2] == [per_large_insert] * 2  # then the last large one with small ones
    assert 1 < per_large_insert < INSERT_SLICE
    assert max(collection.inserts) == INSERT_SLICE  # small events: many per insert
    stored = await collection.collection.find_one({"resource.id": large[0]["id"]})
    assert stored is not None and len(stored["sp"]["patient"]) == 100  # extracted by the writer, every patient


async def test_an_event_mongodb_refuses_is_kept_and_never_holds_back_the_others(
        collection: CountingCollection) -> None:
    log = writer(collection)
    resources = [search_event(patients=2) for _ in range(2 * INSERT_SLICE)]
    resources[INSERT_SLICE + 1] = search_event(patients=2, status=500)  # refused by the validator
    for resource in resources:
        log.record(resource, now_ms())
    for _ in range(2):  # the refused one is tried again at every flush, the others are written once
        with pytest.raises(BulkWriteError):
            await log.flush()
    written = {d["_id"] async for d in collection.collection.find({}, {"_id": 1})}
    assert written == {r["id"] for r in resources} - {resources[INSERT_SLICE + 1]["id"]}
    assert log.pending == 1
