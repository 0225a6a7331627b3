"""The reads' audit writer in a process of its own (``storage/audit_process.py``, ``FHIR_AUDIT_WRITER=process``):
every event it is given is written, with its search values, on a clean shutdown and when the process dies; an
event the child cannot index as the server would is written by the server itself."""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.heap import GC_YOUNG_THRESHOLD
from fhir_server.interactions.audit_event import Asked, data_entity, event, query_entity
from fhir_server.search import audit_values
from fhir_server.services import Services
from fhir_server.storage.audit_log import AuditLog
from fhir_server.storage.audit_process import (
    BATCH,
    MESSAGE_BYTES,
    NICENESS,
    RESTARTS,
    ProcessAuditLog,
    WriterProcess,
    message_size,
    pack,
    unpack,
)
from fhir_server.storage.documents import now_ms
from tests.audit.test_audit_writer import BASE, RESEARCHER, search_event
from tests.conftest import unique


def dying_index(resource: dict[str, Any]) -> dict[str, Any]:
    """A child's ``index`` that ends its process (killed, out of memory)."""
    os._exit(3)


def child_index(resource: dict[str, Any]) -> dict[str, Any]:
    """A child's ``index`` whose values tell who extracted them."""
    return {"by": "child"}


def collector_index(resource: dict[str, Any]) -> dict[str, Any]:
    """A child's ``index`` whose values are the child's garbage-collector settings."""
    return {"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}


def here_index(resource: dict[str, Any]) -> dict[str, Any]:
    return {"by": "server"}


@pytest.fixture
async def collection(db: AsyncDatabase) -> AsyncIterator[AsyncCollection]:
    name = unique("audit-process-")
    yield db[name]
    await db.drop_collection(name)


def process_writer(collection: AsyncCollection, mongo_uri: str, child: Any = audit_values.default_index,
                   here: Any = here_index, deferred: Any = lambda resource: True) -> ProcessAuditLog:
    in_loop = AuditLog(collection, here, batch_size=100_000, interval=3600)
    return ProcessAuditLog(in_loop, WriterProcess(mongo_uri, collection.database.name, collection.name, child),
                           deferred)


async def stored_ids(collection: AsyncCollection) -> set[str]:
    return {d["_id"] async for d in collection.find({}, {"_id": 1})}


async def test_a_clean_shutdown_writes_every_event_given_to_the_writer_process(
        collection: AsyncCollection, mongo_uri: str) -> None:
    log = process_writer(collection, mongo_uri)
    events = [search_event(patients=100) for _ in range(7)] + [search_event(patients=1) for _ in range(150)]
    for resource in events:
        log.record(resource, now_ms())
    await log.close()  # never flushed before: the child starts, writes all, and ends
    assert await stored_ids(collection) == {r["id"] for r in events}
    stored = await collection.find_one({"_id": events[0]["id"]})
    assert stored is not None and len(stored["sp"]["patient"]) == 100  # extracted by the child
    assert orjson.dumps(stored["resource"]) == orjson.dumps(events[0])  # the same event, in the same order
    assert stored["lastUpdated"].tzinfo is not None
    assert log.pending == 0


async def test_the_events_of_a_writer_process_that_was_killed_are_written_by_the_next(
        collection: AsyncCollection, mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    log = process_writer(collection, mongo_uri)
    first = [search_event(patients=3) for _ in range(5)]
    for resource in first:
        log.record(resource, now_ms())
    await log.flush()
    child = log._child
    assert child is not None and child.pid is not None
    # it yields the cores to the requests' work when they are busy
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    os.kill(child.pid, signal.SIGKILL)
    later = [search_event(patients=3) for _ in range(5)]
    for resource in later:
        log.record(resource, now_ms())
    with caplog.at_level(logging.ERROR):
        await log.close()
    assert await stored_ids(collection) == {r["id"] for r in first + later}
    assert "The audit writer process ended" in caplog.text


async def test_after_the_writer_process_died_repeatedly_the_server_writes_its_events_itself(
        collection: AsyncCollection, mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    log = process_writer(collection, mongo_uri, child=dying_index)
    events = [search_event(patients=2) for _ in range(4)]
    for resource in events:
        log.record(resource, now_ms())
    with caplog.at_level(logging.ERROR):
        await log.flush()
    assert f"{RESTARTS} times in a row" in caplog.text
    more = search_event(patients=2)
    log.record(more, now_ms())  # from now on queued for the server's own writer
    await log.close()
    stored = [d async for d in collection.find({})]
    assert {d["_id"] for d in stored} == {r["id"] for r in [*events, more]}
    assert all(d["sp"] == {"by": "server"} for d in stored)


async def test_an_event_the_child_would_index_differently_is_indexed_and_written_by_the_server(
        collection: AsyncCollection, mongo_uri: str) -> None:
    own = search_event(patients=1)  # e.g. a SearchParameter added for AuditEvent at run time
    log = process_writer(collection, mongo_uri, child=child_index, deferred=lambda resource: resource is not own)
    events = [search_event(patients=1) for _ in range(3)]
    for resource in [*events, own]:
        log.record(resource, now_ms())
    await log.close()
    by = {d["_id"]: d["sp"]["by"] async for d in collection.find({})}
    assert by == {**{r["id"]: "child" for r in events}, own["id"]: "server"}


async def test_the_server_writes_reads_events_through_a_process_by_default(services: Services) -> None:
    assert services.settings.audit_writer == "process"
    assert isinstance(services.audit_log, ProcessAuditLog)


async def test_a_writer_process_that_cannot_start_leaves_the_writing_to_the_server(
        collection: AsyncCollection, mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    log = process_writer(collection, mongo_uri, child=lambda resource: {})  # cannot reach a process by name
    events = [search_event(patients=2) for _ in range(3)]
    for resource in events:
        log.record(resource, now_ms())
    with caplog.at_level(logging.ERROR):
        await log.close()
    assert "could not start" in caplog.text
    assert await stored_ids(collection) == {r["id"] for r in events}


def _queue_search_events(log: ProcessAuditLog, count: int) -> list[str]:
    """Queue ``count`` events of 100-patient pages, built here and dropped by the caller; their ids."""
    ids = []
    for _ in range(count):
        resource = search_event(patients=100)
        ids.append(resource["id"])
        log.record(resource, now_ms())
    return ids


async def test_a_queued_event_holds_nothing_the_cyclic_garbage_collector_visits(
        collection: AsyncCollection, mongo_uri: str) -> None:
    """An event waits in the queue until the next flush: as dicts, a 100-patient page's hundreds of containers
    would be promoted to the old generation and make full collections (pauses of every request) more frequent."""
    log = process_writer(collection, mongo_uri)
    gc.collect()
    tracked = len(gc.get_objects())
    ids = _queue_search_events(log, 20)
    assert log.pending == 20
    assert len(gc.get_objects()) - tracked < 200  # the 20 events' dicts and lists were ~100 containers each
    await log.close()
    assert await stored_ids(collection) == set(ids)
    stored = await collection.find_one({"_id": ids[0]})
    assert stored is not None and len(stored["sp"]["entity"]) == 100


async def test_a_full_queue_drops_its_oldest_event_and_names_it(
        collection: AsyncCollection, mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    log = process_writer(collection, mongo_uri)
    log.max_pending = 2
    with caplog.at_level(logging.ERROR):
        ids = _queue_search_events(log, 3)
    assert f"AuditEvent {ids[0]} dropped" in caplog.text
    await log.close()
    assert await stored_ids(collection) == set(ids[1:])


async def test_an_event_that_is_not_json_is_written_by_the_server(collection: AsyncCollection,
                                                                   mongo_uri: str) -> None:
    odd = {**search_event(patients=1), "outcomeDesc": b"bytes"}  # no event the server builds
    log = process_writer(collection, mongo_uri, child=child_index)
    log.record(odd, now_ms())
    await log.close()
    assert [d["sp"] async for d in collection.find({})] == [{"by": "server"}]


async def test_the_writer_process_collects_its_young_generation_as_rarely_as_the_server(
        collection: AsyncCollection, mongo_uri: str) -> None:
    """A batch of search events is tens of thousands of dicts alive until their insert: at CPython's 700 the
    child's collector traversed each batch again every couple of events (bench/README, "The audit trail's fixed
    costs")."""
    log = process_writer(collection, mongo_uri, child=collector_index)
    log.record(search_event(patients=1), now_ms())
    await log.close()
    stored = await collection.find_one({})
    assert stored is not None
    assert stored["sp"]["young"] == GC_YOUNG_THRESHOLD > 700  # CPython's default
    assert stored["sp"]["frozen"] > 0  # what start-up imported is out of the full passes


def test_a_message_to_the_writer_process_holds_at_most_a_megabyte_or_a_batch() -> None:
    search_sized = [b"x" * 7_000] * 400
    assert message_size(search_sized) == MESSAGE_BYTES // 7_000  # the one that would pass the limit goes next
    assert message_size([b"x" * (2 * MESSAGE_BYTES)] * 3) == 1  # an event larger than a message travels alone
    assert message_size([b"{}"] * (BATCH + 5)) == BATCH
    assert message_size([b"{}"] * 3) == 3


def test_an_event_crosses_the_pipe_unchanged_whatever_its_entities() -> None:
    read = Asked("GET", "Patient/p-1", "read", "R", "Patient")
    events = [
        search_event(patients=100),
        event("ifp-fhir", RESEARCHER, BASE, read, 200, [data_entity("Patient/p-1/_history/2")], now_ms()),
        event("ifp-fhir", None, BASE, read, 401, [], now_ms(), description="no token"),  # no entity
        event("ifp-fhir", RESEARCHER, BASE, read, 200, [query_entity("Patient?x=1")], now_ms()),
        {**search_event(patients=2), "entity": [{"what": {"reference": "Patient/1", "display": "x"},
                                                 "role": {"code": "1"}}]},  # not the usual shape
    ]
    for resource in events:
        recorded = now_ms()
        travelled = orjson.loads(orjson.dumps(pack(recorded, resource)))
        back, when = unpack(travelled)
        assert orjson.dumps(back) == orjson.dumps(resource)
        assert when == recorded
    packed = orjson.dumps(pack(now_ms(), events[0]))
    assert len(packed) < len(orjson.dumps(events[0])) / 2  # a page's patients travel as references
