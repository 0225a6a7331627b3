"""Where AuditEvents are stored (https://hl7.org/fhir/R4/auditevent.html; README, "Audit trail").

One collection, ``AuditEvent``, whose documents have the shape of any resource collection's current documents
(``_id``, ``vid`` 1, ``lastUpdated``, ``deleted`` false, ``resource``, ``sp``), so that the ordinary read and search
paths serve them, but no ``history`` version: an AuditEvent is written once and never changed.

Two ways in:

- ``write(documents, session)``: in a write's own transaction (the unit of work's last flush), so that no change
  commits without its trace and no trace survives an aborted change;
- ``record(resource, recorded)``: everything else (reads, searches, operations, refused and failed requests) is queued
  and written in the background once ``batch_size`` events are queued or ``interval`` seconds have passed, whichever
  comes first (``insert_many`` of a few large events or many small ones at a time: ``slice_size``), so that a read
  never waits for its audit write, nor for the extraction of the event's search values (``index``, run by the
  writer). ``close()`` (the app's shutdown,
  through ``Services.close``) writes what is still queued: nothing is lost on a clean shutdown. A failed background
  write keeps its batch for the next attempt, up to ``max_pending`` events queued; beyond that the oldest are dropped
  and each drop is logged as an error (memory must stay bounded while MongoDB is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from fhir_server.context import RequestContext
from fhir_server.permissions import Role

log = logging.getLogger(__name__)

AUDIT_EVENTS = "AuditEvent"  # the collection (named after the type, as every resource collection)
# Who may read the audit trail (every read path of the store filters the collection by this).
AUDIT_READERS = frozenset({Role.ADMIN, Role.SYSTEM})
NOTHING: dict[str, Any] = {"_id": {"$in": []}}  # a filter no document matches
# Events per background insert, by size: the driver encodes an insert at once, in the event loop's thread (about
# 50 kB of BSON for the event of a 100-result search), so a request that arrives meanwhile waits for that slice; but
# each ``insert_many`` also costs about 0.3 ms of the driver's CPU whatever it carries (measured: 0.46 ms per
# search event in inserts of 2, 0.25 in inserts of 8; a read's 3 kB event 0.31 ms in inserts of 2, 0.04 in inserts
# of 32). A slice closes at INSERT_WEIGHT (an event weighs EVENT_WEIGHT plus its entities: about six events of a
# 100-patient page, well under a millisecond to encode) or at INSERT_SLICE events (a read's event names 2-3).
INSERT_SLICE = 64
INSERT_WEIGHT = 640
EVENT_WEIGHT = 8

def audit_read_filter(ctx: RequestContext, resource_type: str | None) -> dict[str, Any]:
    """Extra filter of the store's reads: AuditEvents are visible to admins (and the system) only, on every read
    path (search, includes, chains, ``_has``, conditional matches), not only where a request names the type."""
    if resource_type == AUDIT_EVENTS and ctx.role not in AUDIT_READERS:
        return NOTHING
    return {}


def audit_document(resource: dict[str, Any], recorded: datetime,
                   search_values: dict[str, Any] | None) -> dict[str, Any]:
    """The stored document of an AuditEvent (``resource`` carries its ``id``; ``recorded`` is its ``lastUpdated``;
    ``search_values`` None: extracted when it is written)."""
    return {"_id": resource["id"], "vid": 1, "lastUpdated": recorded, "deleted": False, "resource": resource,
            "sp": search_values}


class AuditLog:
    """The AuditEvent collection: transactional writes and the background batcher (see the module's docstring)."""

    def __init__(self, collection: AsyncCollection, index: Callable[[dict[str, Any]], dict[str, Any]], *,
                 batch_size: int = 200, interval: float = 0.5, max_pending: int = 100_000) -> None:
        self._collection = collection
        self._index = index  # an event's search values (``sp``)
        self.batch_size = batch_size
        self.interval = interval
        self.max_pending = max_pending
        # documents, their ``sp`` extracted when written (``ProcessAuditLog`` queues them as the child's JSON)
        self._pending: list[Any] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._lock = asyncio.Lock()  # one insert at a time: a flush waits for the one in progress

    async def write(self, documents: Sequence[dict[str, Any]], session: AsyncClientSession) -> None:
        """Insert ``documents`` in the session's transaction (one round trip with the others of the flush)."""
        if documents:
            await self._collection.insert_many(list(documents), ordered=False, session=session)

    def record(self, resource: dict[str, Any], recorded: datetime) -> None:
        """Queue the AuditEvent ``resource`` for the background writer; never waits, never raises."""
        self._enqueue(audit_document(resource, recorded, None))

    def _enqueue(self, item: Any) -> None:
        """Queue ``item`` (what this writer's ``flush`` takes: here a document) and wake the writer."""
        if len(self._pending) >= self.max_pending:
            dropped = self._pending.pop(0)
            log.error("Audit queue full (%d events): AuditEvent %s dropped", self.max_pending, self._id_of(dropped))
        self._pending.append(item)
        if len(self._pending) >= self.batch_size:
            self._full.set()
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._run(), name="audit-log-flusher")

    @staticmethod
    def _id_of(item: Any) -> Any:
        """The id of a queued event (for the log)."""
        return item.get("_id")

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return len(self._pending)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.interval)
            self._full.clear()
            try:
                await self.flush()
            except PyMongoError as exc:  # kept for the next round; MongoDB may be back by then
                log.warning("Writing %d AuditEvents failed, retrying: %s", len(self._pending), _summary(exc))
            except Exception:  # the writer must outlive any one round
                log.exception("Writing %d AuditEvents failed, retrying", len(self._pending))

    async def flush(self) -> None:
        """Write every queued event now (what is queued while it writes is written by the next flush)."""
        async with self._lock:
            while self._pending:
                size = slice_size(self._pending)
                batch, self._pending = self._pending[:size], self._pending[size:]
                try:
                    await self._index_all(batch)
                    await self._collection.insert_many(batch, ordered=False)
                except PyMongoError as exc:
                    self._pending[:0] = _unwritten(batch, exc)
                    raise
                except BaseException:  # cancelled (shutdown): the next flush writes it (a duplicate _id is skipped)
                    self._pending[:0] = batch
                    raise

    async def _index_all(self, batch: list[dict[str, Any]]) -> None:
        """Extract the search values of a batch, letting requests run between two events: the event of a search
        names up to a page of patients (about 0.3 ms of extraction each), and a request that arrives meanwhile
        should wait for one event at most, not for a batch."""
        for document in batch:
            if document["sp"] is None:
                document["sp"] = self._search_values(document)
                await asyncio.sleep(0)

    def _search_values(self, document: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._index(document["resource"])
        except Exception:  # an event is kept even when it cannot be indexed (found by date order, not by parameter)
            log.exception("The search values of AuditEvent %s could not be extracted", document["_id"])
            return {}

    async def close(self) -> None:
        """Stop the background writer and write what is still queued (the app's clean shutdown)."""
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self.flush()
        except PyMongoError as exc:  # the shutdown goes on; what could not be written is named in the log
            log.error("%d AuditEvents could not be written at shutdown: %s", self.pending, _summary(exc))


def slice_size(pending: Sequence[dict[str, Any]]) -> int:
    """How many of the first ``pending`` documents one insert carries: events up to ``INSERT_WEIGHT`` (at least
    one), at most ``INSERT_SLICE``."""
    weight = 0
    for count, document in enumerate(pending[:INSERT_SLICE], start=1):
        weight += EVENT_WEIGHT + len(document["resource"].get("entity") or ())
        if weight >= INSERT_WEIGHT:
            return count
    return min(len(pending), INSERT_SLICE)


def _summary(exc: PyMongoError) -> str:
    """The cause of a failed insert, without the documents a bulk write error carries."""
    details = getattr(exc, "details", None)
    errors = details.get("writeErrors") if isinstance(details, dict) else None
    if errors:
        return f"{len(errors)} refused, first: {errors[0].get('errmsg', '')[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _unwritten(batch: list[dict[str, Any]], exc: PyMongoError) -> list[dict[str, Any]]:
    """The events of ``batch`` still to write after ``exc``: an unordered bulk insert reports the ones it refused;
    a duplicate ``_id`` (a retried insert that had in fact succeeded) is written already."""
    details = getattr(exc, "details", None)
    errors = details.get("writeErrors") if isinstance(details, dict) else None
    if not errors:
        return batch
    return [batch[e["index"]] for e in errors if e.get("code") != 11000]
