"""Export jobs in MongoDB (collection ``bulk_jobs``), so that every server process answers the same status.

A job is created ``in-progress`` by the process that accepted the kick-off; that process runs it as an asyncio
task and refreshes ``heartbeat`` every few seconds. If the process dies, the heartbeat stops: the next status
request (answered by any process) sees a heartbeat older than ``STALE_AFTER_SECONDS`` and marks the job
``failed`` (the client gets a 500 OperationOutcome and starts a new export). Cancelling (DELETE on the status
URL, export.html#bulk-data-delete-request) removes the job document; the running task notices at its next
heartbeat and deletes its files. Jobs and files expire ``export_ttl_seconds`` after completion.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.context import RequestContext
from fhir_server.storage.documents import now_ms

JOBS = "bulk_jobs"
IN_PROGRESS, COMPLETED, FAILED = "in-progress", "completed", "failed"
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 60.0
# This process, as the owner of the jobs it runs.
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class OutputFile:
    """One NDJSON file of the manifest's ``output`` (export.html#response---complete-status)."""

    type: str
    name: str
    count: int


@dataclass
class ExportJob:
    id: str
    level: str  # system | patient | group
    request: str  # the kick-off URL, for the manifest's ``request``
    types: list[str]
    transaction_time: datetime
    expires: datetime
    base_url: str
    caller: str
    scopes: list[str]
    center: str | None = None
    group_id: str | None = None
    since: datetime | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    output_format: str = "application/fhir+ndjson"
    status: str = IN_PROGRESS
    owner: str = PROCESS
    heartbeat: datetime | None = None
    progress: str = "accepted"
    output: list[OutputFile] = field(default_factory=list)
    message: str | None = None  # why it failed

    def context(self) -> RequestContext:
        """The kick-off caller's context: the task reads exactly what the caller may read."""
        return RequestContext(base_url=self.base_url, caller=self.caller, scopes=frozenset(self.scopes),
                              center=self.center)

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ExportJob:
        data = dict(doc)
        data["id"] = data.pop("_id")
        data["output"] = [OutputFile(**o) for o in data.get("output", [])]
        return cls(**data)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Reads and conditional updates of ``bulk_jobs``; updates by the runner match its ``owner``."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db[JOBS]

    async def insert(self, job: ExportJob) -> None:
        job.heartbeat = now_ms()
        await self.collection.insert_one(job.to_document())

    async def get(self, job_id: str) -> ExportJob | None:
        doc = await self.collection.find_one({"_id": job_id})
        return ExportJob.from_document(doc) if doc else None

    async def beat(self, job: ExportJob, progress: str) -> bool:
        """Refresh the heartbeat; False when the job was cancelled (or taken away) meanwhile."""
        result = await self.collection.update_one(
            self._mine(job), {"$set": {"heartbeat": now_ms(), "progress": progress}})
        return result.matched_count == 1

    async def complete(self, job: ExportJob, output: list[OutputFile], ttl_seconds: int) -> bool:
        now = now_ms()
        result = await self.collection.update_one(self._mine(job), {"$set": {
            "status": COMPLETED, "heartbeat": now, "progress": "completed",
            "output": [asdict(o) for o in output], "expires": now + timedelta(seconds=ttl_seconds)}})
        return result.matched_count == 1

    async def fail(self, job_id: str, message: str, *, only_if: dict[str, Any] | None = None) -> bool:
        query = {"_id": job_id, "status": IN_PROGRESS, **(only_if or {})}
        result = await self.collection.update_one(query, {"$set": {"status": FAILED, "message": message}})
        return result.matched_count == 1

    async def fail_if_stale(self, job: ExportJob) -> ExportJob | None:
        """Mark the job failed when its heartbeat stopped (its process died); the updated job or None."""
        cutoff = now_ms() - timedelta(seconds=STALE_AFTER_SECONDS)
        doc = await self.collection.find_one_and_update(
            {"_id": job.id, "status": IN_PROGRESS, "heartbeat": {"$lt": cutoff}},
            {"$set": {"status": FAILED, "message": (
                f"The server process running this export ({job.owner}) stopped responding; "
                "start a new export")}},
            return_document=ReturnDocument.AFTER)
        return ExportJob.from_document(doc) if doc else None

    async def remove(self, job_id: str) -> bool:
        result = await self.collection.delete_one({"_id": job_id})
        return result.deleted_count == 1

    async def expired(self, now: datetime) -> list[str]:
        """Ids of the jobs past their expiry that no live process runs (a handful at a time)."""
        stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
        query = {"expires": {"$lt": now},
                 "$or": [{"status": {"$ne": IN_PROGRESS}}, {"heartbeat": {"$lt": stale}}]}
        cursor = self.collection.find(query, {"_id": 1}, limit=100)
        return [doc["_id"] async for doc in cursor]

    @staticmethod
    def _mine(job: ExportJob) -> dict[str, Any]:
        return {"_id": job.id, "status": IN_PROGRESS, "owner": job.owner}
