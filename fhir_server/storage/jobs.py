"""Background jobs (bulk export, reindex) in one MongoDB collection, so that every server process answers the
same status, and no job stays ``in-progress`` after the process running it died.

A job document has ``_id``, ``kind`` (``export``, ``reindex``), ``status`` (``in-progress``, ``completed``,
``failed``), ``owner`` (the process running it), ``heartbeat`` (refreshed by the owner with every progress
update), ``expires`` (when the job and what it produced may be removed), and what its kind records.

The owner's updates match ``status: in-progress`` and its ``owner`` (and, for kinds that count them, its
``attempts``: the run it is): a job cancelled meanwhile (its document removed) or taken over by another process
(or by a later run in the same process) refuses them, and the owner stops. A heartbeat older than
``STALE_AFTER_SECONDS`` means the owner died: any process may then take the job over (:meth:`take_over_if_stale`:
a reindex or an export resumes from its saved position; with ``max_attempts`` only while fewer runs were
started) or fail it (:meth:`fail_if_stale`, when no run is left).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.context import RequestContext
from fhir_server.storage.documents import now_ms

IN_PROGRESS, COMPLETED, FAILED = "in-progress", "completed", "failed"
STALE_AFTER_SECONDS = 60.0
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)  # the heartbeat of a job its owner gave up: stale for everyone
# This process, as the owner of the jobs it runs.
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

Job = dict[str, Any]


class JobStore:
    """The jobs of one ``kind``: reads, and updates conditional on status and owner."""

    def __init__(self, collection: AsyncCollection, kind: str) -> None:
        self._collection = collection
        self.kind = kind

    async def insert(self, job: Job) -> None:
        """Record a new job (``in-progress`` and owned by this process unless ``job`` says otherwise)."""
        await self._collection.insert_one({"status": IN_PROGRESS, "owner": PROCESS, **job, "kind": self.kind,
                                           "heartbeat": now_ms()})

    async def get(self, job_id: str) -> Job | None:
        """The job, whoever started it (the server's own work: running, resuming, housekeeping)."""
        return await self._collection.find_one(self._key(job_id))

    async def get_for(self, ctx: RequestContext, job_id: str) -> Job | None:
        """The job if ``ctx``'s caller started it (same client, role and center), else None: another caller's
        job does not exist for this one (its status, manifest and files are 404 to it)."""
        return await self._collection.find_one({**self._key(job_id), **owned_by(ctx)})

    async def update(self, job_id: str, owner: str, *, set_fields: Job | None = None,
                     inc: dict[str, int] | None = None, attempt: int | None = None) -> bool:
        """The owner's progress update, which also refreshes the heartbeat; False when the job is no longer
        the owner's to run (cancelled, finished or taken over; ``attempt``: a later run started)."""
        change: dict[str, Any] = {"$set": {"heartbeat": now_ms(), **(set_fields or {})}}
        if inc:
            change["$inc"] = inc
        result = await self._collection.update_one(self._running(job_id, owner, attempt), change)
        return result.matched_count == 1

    async def fail(self, job_id: str, fields: Job, *, owner: str | None = None, attempt: int | None = None) -> bool:
        """Mark a running job failed (only if ``owner`` still runs it, in run ``attempt``, when given)."""
        query = self._running(job_id, owner, attempt) if owner else {**self._key(job_id), "status": IN_PROGRESS}
        result = await self._collection.update_one(query, {"$set": {"status": FAILED, **fields}})
        return result.matched_count == 1

    async def release(self, job_id: str, owner: str, *, attempt: int | None = None) -> bool:
        """The owner stops running the job without finishing it (its process shuts down): its heartbeat is made
        stale now, so that another process takes it over at once instead of after ``STALE_AFTER_SECONDS``."""
        result = await self._collection.update_one(self._running(job_id, owner, attempt),
                                                   {"$set": {"heartbeat": RELEASED}})
        return result.matched_count == 1

    async def fail_if_stale(self, job_id: str, fields: Job) -> Job | None:
        """Mark the job failed when its heartbeat stopped (its process died); the updated job, or None."""
        return await self._collection.find_one_and_update(
            self._stale(job_id), {"$set": {"status": FAILED, **fields}}, return_document=ReturnDocument.AFTER)

    async def take_over_if_stale(self, job_id: str, *, max_attempts: int | None = None) -> Job | None:
        """Make this process the owner of a job whose heartbeat stopped; the job when taken, else None (running
        elsewhere, finished, or taken by another process first). With ``max_attempts``, a job counts its runs
        (``attempts``, 1 for the first): it is taken only while fewer than that were started."""
        query = self._stale(job_id)
        change: dict[str, Any] = {"$set": {"owner": PROCESS, "heartbeat": now_ms()}}
        if max_attempts is not None:
            query["attempts"] = {"$lt": max_attempts}
            change["$inc"] = {"attempts": 1}
        return await self._collection.find_one_and_update(query, change, return_document=ReturnDocument.AFTER)

    async def stale(self) -> list[str]:
        """Ids of the running jobs whose heartbeat stopped (a handful at a time)."""
        query = {"kind": self.kind, "status": IN_PROGRESS, "heartbeat": {"$lt": _stale_cutoff(now_ms())}}
        return [doc["_id"] async for doc in self._collection.find(query, {"_id": 1}, limit=100)]

    async def remove(self, job_id: str) -> bool:
        result = await self._collection.delete_one(self._key(job_id))
        return result.deleted_count == 1

    async def expired(self, now: datetime) -> list[str]:
        """Ids of the jobs past their expiry that no live process runs (a handful at a time)."""
        query = {"kind": self.kind, "expires": {"$lt": now},
                 "$or": [{"status": {"$ne": IN_PROGRESS}}, {"heartbeat": {"$lt": _stale_cutoff(now)}}]}
        return [doc["_id"] async for doc in self._collection.find(query, {"_id": 1}, limit=100)]

    def _key(self, job_id: str) -> Job:
        return {"_id": job_id, "kind": self.kind}

    def _running(self, job_id: str, owner: str, attempt: int | None = None) -> Job:
        running = {**self._key(job_id), "status": IN_PROGRESS, "owner": owner}
        return running if attempt is None else {**running, "attempts": attempt}

    def _stale(self, job_id: str) -> Job:
        return {**self._key(job_id), "status": IN_PROGRESS, "heartbeat": {"$lt": _stale_cutoff(now_ms())}}


def owned_by(ctx: RequestContext) -> Job:
    """The fields of a job document that bind it to the caller who started it."""
    return {"caller": ctx.caller, "role": ctx.role.value, "center": ctx.center}


def _stale_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=STALE_AFTER_SECONDS)
