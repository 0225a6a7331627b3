"""A transaction Bundle's ``ifNoneExist`` lookups of every type are one command (issue #14,
``ResourceStore.find_each_of_types``): each type's documents are read through the access filter of that type, as
one lookup per type was, so a center's lookups never find another center's resources."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import AsyncMongoClient

from fhir_server.context import RequestContext
from fhir_server.permissions import Role
from fhir_server.storage.documents import ResourceWrite
from fhir_server.storage.store import ResourceStore

BASE = "http://testserver/fhir"
POITIERS = RequestContext(base_url=BASE, role=Role.EHR, center="FR-POI")
LYON = RequestContext(base_url=BASE, role=Role.EHR, center="FR-LYO")


def _write(kind: str, ident: str, code: str) -> ResourceWrite:
    return ResourceWrite(type=kind, id=ident, vid=1, last_updated=datetime.now(UTC), method="POST",
                         resource={"resourceType": kind, "id": ident},
                         search_values={"identifier": [{"s": "urn:test", "c": code}]})


def _by_code(code: str) -> dict[str, object]:
    return {"sp.identifier": {"$elemMatch": {"s": "urn:test", "c": code}}}


async def test_lookups_of_several_types_answer_each_query_within_the_callers_center(
        mongo_uri: str, mongo_client: AsyncMongoClient) -> None:
    name = f"each_of_types_{uuid.uuid4().hex[:8]}"
    store = ResourceStore.open(mongo_uri, name)
    poitiers = RequestContext(base_url=BASE, role=Role.EHR, center="FR-POI")
    lyon = RequestContext(base_url=BASE, role=Role.EHR, center="FR-LYO")
    try:
        writes = [_write("Patient", "p1", "a"), _write("Observation", "o1", "b"), _write("Observation", "o2", "b")]

        async def work(session):  # type: ignore[no-untyped-def]
            await store.apply(poitiers, writes, session)

        await store.run_transaction(work)
        queries = {"Patient": [_by_code("a"), _by_code("z")], "Observation": [_by_code("b"), _by_code("a")]}

        async def lookups(ctx: RequestContext) -> dict[str, list[list[str]]]:
            found = await store.run_transaction(
                lambda session: store.find_each_of_types(ctx, queries, limit=2, session=session))
            return {kind: [sorted(doc["_id"] for doc in docs) for docs in each] for kind, each in found.items()}

        assert await lookups(poitiers) == {"Patient": [["p1"], []], "Observation": [["o1", "o2"], []]}
        assert await lookups(lyon) == {"Patient": [[], []], "Observation": [[], []]}
        one = await store.find_each_of_types(poitiers, {"Observation": [_by_code("b")]}, limit=1)
        assert [len(docs) for docs in one["Observation"]] == [1]
        assert all("sp" not in doc for doc in one["Observation"][0])
    finally:
        await store.close()
        await mongo_client.drop_database(name)


async def test_lookups_read_a_counter_in_the_same_command_through_the_same_filters(
        private_store: ResourceStore) -> None:
    store = private_store
    queries = {"Patient": [_by_code("a")]}  # one type: still one command, the counter beside it
    found, counter = await store.find_each_of_types_and_counter(POITIERS, queries, "epoch", limit=2)
    assert found == {"Patient": [[]]} and counter == (0, "")  # before its first bump

    async def work(session):  # type: ignore[no-untyped-def]
        await store.apply(POITIERS, [_write("Patient", "p1", "a")], session)
        await store.bump_counter("epoch", session)
        await store.bump_counter("epoch", session)

    await store.run_transaction(work)
    found, counter = await store.find_each_of_types_and_counter(POITIERS, queries, "epoch", limit=2)
    assert [[doc["_id"] for doc in docs] for docs in found["Patient"]] == [["p1"]]
    assert counter == await store.read_counter("epoch") and counter[0] == 2 and counter[1]
    found, counter = await store.find_each_of_types_and_counter(LYON, queries, "epoch", limit=2)
    assert found == {"Patient": [[]]} and counter[0] == 2  # another center's resource stays invisible
