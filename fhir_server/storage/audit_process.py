"""The reads' audit writer in a process of its own (README, "Audit trail"; https://hl7.org/fhir/R4/auditevent.html).

The background writer of ``audit_log.py`` runs on the server's event loop: an event's search values, its BSON and
the driver's insert (about 1 ms of CPU for the event of a 100-result search) delay every request that arrives while
it works, which is what made a search's p95 cost 25-40 % with the audit trail (bench/README.md, "Tokens and the
audit trail, one run"). ``ProcessAuditLog`` keeps the queue in the server's process, each event queued as the
compact JSON the child reads (``pack``: the entities of a search's page as ``[kind, reference]``; orjson), hands
each batch over a pipe to a child process and awaits its answer in a thread (the pipe's I/O releases the GIL); the
child builds the stored documents, extracts their search values (``index``, a module-level function: it crosses the
process boundary by name) and inserts them in slices, and answers with the positions it could not write. So the
loop's share of an event is its JSON, and the rest runs on the other core.

Nothing is dropped silently: a batch stays queued in the server until the child has answered for it; one the
child could not write (MongoDB away) is queued again, as the in-loop writer does; if the child dies (killed, out
of memory) its batch is written again by the next one (a duplicate ``_id`` of events it had written counts as
written) and, after ``RESTARTS`` deaths in a row, by the in-loop writer from then on, each death logged as an error.
``close()`` (the server's clean shutdown) writes what is queued, then stops the child, which ends after its batch.
The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole process group: the server drains it),
and ends by itself when the server's end of the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, PyMongoError

from fhir_server.heap import settle_heap
from fhir_server.storage.audit_log import AuditLog, _summary, audit_document, slice_size
from fhir_server.storage.client import CODEC_OPTIONS

log = logging.getLogger(__name__)

Index = Callable[[dict[str, Any]], dict[str, Any]]
# A message to the child: at most BATCH events and MESSAGE_BYTES of JSON (about 150 events of a 100-result search,
# whose event is about 7 kB; a read's is about 1 kB), unless its one event is larger. Joining it holds the loop for
# a copy of that much.
BATCH = 1000
MESSAGE_BYTES = 1 << 20
RESTARTS = 3  # deaths in a row of the child after which this process writes its events itself
STOP = b""  # the message that ends the child (after the batches before it)
# The child's niceness (nice(2), added to the server's): when the cores are busy, the requests' work goes first and
# the trail's catches up in the gaps (weight 335 against 1024: a third of a contended core, far more than it needs)
NICENESS = 5


@dataclass(frozen=True)
class ProcessIndex:
    """What the writer process needs to index events: ``index`` (module-level: it crosses the process boundary by
    name) and ``deferred``, whether it gives the values the server's own registry would for an event."""

    index: Index
    deferred: Callable[[dict[str, Any]], bool]


class ChildGone(Exception):
    """The writer process ended (or could not start) before answering for a batch."""


class WriterProcess:
    """The child process and its pipe (blocking calls: run them in a thread)."""

    def __init__(self, uri: str, database: str, collection: str, index: Index) -> None:
        self._target = (uri, database, collection, index)
        self._process: Any = None
        self._pipe: Connection | None = None
        # one exchange at a time: a flush cancelled mid-exchange leaves its thread reading the answer
        self._turn = threading.Lock()

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: the server runs threads and an event loop
        ours, theirs = context.Pipe()
        process = context.Process(target=serve, args=(theirs, *self._target), name="ifp-fhir-audit-writer",
                                  daemon=True)
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._process, self._pipe = process, ours

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def exchange(self, message: bytes) -> dict[str, Any]:
        """Send a batch, wait for the child's answer (``unwritten`` positions, ``error``)."""
        with self._turn:
            return self._exchange(message)

    def _exchange(self, message: bytes) -> dict[str, Any]:
        if self._pipe is None:
            try:
                self.start()
            except Exception as exc:  # e.g. no process may be started here: as if it had died at once
                raise ChildGone(f"could not start: {type(exc).__name__}: {exc}") from exc
        assert self._pipe is not None
        try:
            self._pipe.send_bytes(message)
            while not self._pipe.poll(1.0):
                if not self._process.is_alive():
                    raise ChildGone(f"exit code {self._process.exitcode}")
            answer: dict[str, Any] = orjson.loads(self._pipe.recv_bytes())
            return answer
        except (OSError, EOFError) as exc:
            raise ChildGone(f"{type(exc).__name__}: {exc}") from exc

    def stop(self, timeout: float = 30) -> None:
        """End the child after what it was sent (a clean stop; ``kill`` beyond ``timeout``)."""
        with self._turn:
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.send_bytes(STOP)
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None

    def discard(self) -> None:
        """Forget a child that died (reaped), so that the next exchange starts a new one."""
        with self._turn:
            self._discard()

    def _discard(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None


class ProcessAuditLog(AuditLog):
    """``AuditLog`` whose background writes are done by a ``WriterProcess`` (module docstring); ``write`` (a
    write's transaction) and the queue are the in-loop writer's. ``deferred(resource)`` says whether the child's
    ``index`` gives the search values this process's would (false: a SearchParameter added or changed for
    AuditEvent at run time; such events are written here)."""

    def __init__(self, here: AuditLog, child: WriterProcess, deferred: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__(here._collection, here._index, batch_size=here.batch_size, interval=here.interval,
                         max_pending=here.max_pending)
        self._here = here  # the in-loop writer: events the child cannot index, and the fallback
        self._child: WriterProcess | None = child
        self._deferred = deferred
        self._deaths = 0

    def record(self, resource: dict[str, Any], recorded: datetime) -> None:
        """Queue the event as the JSON the child reads (``pack``), made now: the queue then holds one bytes object
        per event, which the cyclic garbage collector never visits, instead of the hundreds of dicts of a search's
        event, which lived until the next flush (up to ``interval``), were promoted to the old generation by the
        young collections meanwhile and made the full collections that pause every request more frequent."""
        if self._child is None or not self._deferred(resource):
            self._here.record(resource, recorded)
            return
        try:
            packed = orjson.dumps(pack(recorded, resource))
        except TypeError:  # not JSON (no event the server builds): written by this process
            self._here.record(resource, recorded)
            return
        self._enqueue(packed)

    @staticmethod
    def _id_of(item: Any) -> Any:
        return unpack(orjson.loads(item))[0].get("id")

    @property
    def pending(self) -> int:
        return super().pending + self._here.pending

    async def flush(self) -> None:
        async with self._lock:
            while self._pending and self._child is not None:
                size = message_size(self._pending)
                batch, self._pending = self._pending[:size], self._pending[size:]
                try:
                    answer = await self._through_child(batch)
                except ChildGone as exc:
                    self._pending[:0] = batch
                    self._child_died(str(exc))
                    continue
                except BaseException:  # cancelled: the child may have written part of it (a duplicate is skipped)
                    self._pending[:0] = batch
                    raise
                self._deaths = 0
                unwritten = [batch[i] for i in answer.get("unwritten", ())]
                if unwritten:
                    self._pending[:0] = unwritten
                    log.warning("Writing %d AuditEvents failed, retrying: %s", len(unwritten), answer.get("error"))
                    break  # MongoDB may be back by the next round
            if self._child is None and self._pending:  # the child is given up: this process writes them
                self._write_here(self._pending)
                self._pending = []
        await self._here.flush()

    def _write_here(self, packed: list[bytes]) -> None:
        for item in packed:
            self._here.record(*unpack(orjson.loads(item)))

    async def _through_child(self, batch: list[bytes]) -> dict[str, Any]:
        message = b"[" + b",".join(batch) + b"]"  # the batch as one JSON array of ``pack``'s
        child = self._child
        assert child is not None
        # shielded: a cancelled flush must not leave an answer unread in the pipe (the next batch would take it)
        return await asyncio.shield(asyncio.to_thread(child.exchange, message))

    def _child_died(self, why: str) -> None:
        assert self._child is not None
        self._child.discard()
        self._deaths += 1
        if self._deaths >= RESTARTS:
            log.error("The audit writer process ended (%s), %d times in a row: this process writes the AuditEvents "
                      "from now on", why, self._deaths)
            self._child = None
        else:
            log.error("The audit writer process ended (%s): its batch is written by a new one", why)

    async def close(self) -> None:
        await super().close()  # the flusher stopped, what is queued written (through the child)
        if self._child is not None:
            await asyncio.to_thread(self._child.stop)
        await self._here.close()


def message_size(pending: list[bytes]) -> int:
    """How many of the first ``pending`` events one message carries (``BATCH``, ``MESSAGE_BYTES``; at least one)."""
    size = 0
    for count, item in enumerate(pending[:BATCH]):
        size += len(item)
        if size > MESSAGE_BYTES and count:
            return count
    return min(len(pending), BATCH)


# -- what crosses the pipe ----------------------------------------------------------------------------------------

ENTITY_SHAPE = ["what", "type", "role"]  # an entity of a resource read or written, or of a patient


def pack(recorded: datetime, resource: dict[str, Any]) -> list[Any]:
    """``[recorded, resource without its entities, kinds, entities]``, ``unpack``'s input: an entity of the usual
    shape (``what`` a reference alone, then ``type`` and ``role``, in that order) as ``[kind, reference]``, ``kind``
    the position of its ``[type, role]`` in ``kinds``, told apart by identity (the server builds every entity of a
    kind from the same constants; equal but distinct ones just make two kinds). A search's event names up to a page
    of patients: about 200 bytes of JSON each, 40 packed, and the child parses a fifth. Entities not last in the
    resource (no event the server builds) travel as they are (``None``)."""
    entities = resource.get("entity")
    if not entities or next(reversed(resource)) != "entity":
        return [recorded, resource, [], None]
    kinds: list[list[Any]] = []
    known: dict[tuple[int, int], int] = {}
    packed: list[Any] = []
    for entity in entities:
        what = entity.get("what")
        if list(entity) != ENTITY_SHAPE or not isinstance(what, dict) or list(what) != ["reference"]:
            packed.append(entity)
            continue
        key = (id(entity["type"]), id(entity["role"]))
        kind = known.get(key)
        if kind is None:
            kind = known[key] = len(kinds)
            kinds.append([entity["type"], entity["role"]])
        packed.append([kind, what["reference"]])
    rest = dict(resource)
    del rest["entity"]
    return [recorded, rest, kinds, packed]


def unpack(item: list[Any]) -> tuple[dict[str, Any], datetime]:
    """The resource and its ``recorded`` of a ``pack`` read back from JSON (the same JSON as the resource's)."""
    recorded, resource, kinds, packed = item
    if packed is not None:
        resource["entity"] = [
            entity if isinstance(entity, dict)
            else {"what": {"reference": entity[1]}, "type": kinds[entity[0]][0], "role": kinds[entity[0]][1]}
            for entity in packed]
    return resource, datetime.fromisoformat(recorded)


# -- the child ---------------------------------------------------------------------------------------------------


def serve(pipe: Connection, uri: str, database: str, collection: str, index: Index) -> None:
    """The writer process: each message a batch of ``pack``'s; answers what it could not write."""
    for ending in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ending, signal.SIG_IGN)
    os.nice(NICENESS)
    # a batch of search events is tens of thousands of dicts (each event's entities, their search values) alive from
    # parsing to insert: at CPython's young threshold the collector traversed the batch built so far every couple
    # of events and promoted it to the older generations (bench/README, "The audit trail's fixed costs")
    settle_heap()
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry,
                                           w="majority", retryWrites=True)
    target = client[database][collection]
    try:
        while True:
            try:
                message = pipe.recv_bytes()
            except EOFError:  # the server ended without a clean stop
                return
            if message == STOP:
                return
            documents = [audit_document(*unpack(item), None) for item in orjson.loads(message)]
            pipe.send_bytes(orjson.dumps(write_batch(target, documents, index)))
    finally:
        client.close()


def write_batch(target: Any, documents: list[dict[str, Any]], index: Index) -> dict[str, Any]:
    """Index and insert ``documents`` in slices; the positions not written (a duplicate ``_id`` is written) and
    why. Stops at the first failure that is not one document's (MongoDB away): the rest is not written either."""
    unwritten: list[int] = []
    error = ""
    start = 0
    while start < len(documents):
        end = start + slice_size(documents[start:])
        for document in documents[start:end]:
            document["sp"] = _search_values(index, document)
        try:
            target.insert_many(documents[start:end], ordered=False)
        except BulkWriteError as exc:  # the refused ones; the others of the slice are written
            refused = [start + e["index"] for e in exc.details.get("writeErrors") or () if e.get("code") != 11000]
            if refused:
                unwritten += refused
                error = _summary(exc)
        except PyMongoError as exc:
            return {"unwritten": unwritten + list(range(start, len(documents))), "error": _summary(exc)}
        start = end
    return {"unwritten": unwritten, "error": error} if unwritten else {"unwritten": []}


def _search_values(index: Index, document: dict[str, Any]) -> dict[str, Any]:
    try:
        return index(document["resource"])
    except Exception:  # kept even when it cannot be indexed (found by date order, not by parameter)
        log.exception("The search values of AuditEvent %s could not be extracted", document["_id"])
        return {}
