"""Export jobs, kept by the one job store of ``storage/`` (kind ``export``, see ``fhir_server.storage.jobs``), so
that every server process answers the same status.

A job is created ``in-progress`` by the process that accepted the kick-off; that process runs it as an asyncio
task and refreshes ``heartbeat`` every few seconds. If the process dies, the heartbeat stops: the next status
request (answered by any process) sees a heartbeat older than ``STALE_AFTER_SECONDS`` and marks the job
``failed`` (the client gets a 500 OperationOutcome and starts a new export: the files of a dead process are
not worth resuming from). Cancelling (DELETE on the status
URL, export.html#bulk-data-delete-request) removes the job document; the running task notices at its next
heartbeat and deletes its files. Jobs and files expire ``export_ttl_seconds`` after completion.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.permissions import Role
from fhir_server.storage.documents import now_ms
from fhir_server.storage.jobs import COMPLETED, FAILED, IN_PROGRESS, PROCESS, STALE_AFTER_SECONDS, JobStore
from fhir_server.storage.store import ResourceStore

EXPORT = "export"  # the kind of the job documents
HEARTBEAT_SECONDS = 5.0
__all__ = ["COMPLETED", "FAILED", "IN_PROGRESS", "STALE_AFTER_SECONDS", "ExportJob", "ExportJobs", "OutputFile"]


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
    role: str = Role.SYSTEM.value
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
                              center=self.center, role=Role(self.role))

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ExportJob:
        data = {k: v for k, v in doc.items() if k != "kind"}
        data["id"] = data.pop("_id")
        data["output"] = [OutputFile(**o) for o in data.get("output", [])]
        return cls(**data)


def new_job_id() -> str:
    return uuid.uuid4().hex


class ExportJobs:
    """Export jobs in the job store; updates by the runner match the job's ``owner``."""

    def __init__(self, store: ResourceStore) -> None:
        self._jobs: JobStore = store.jobs(EXPORT)

    async def insert(self, job: ExportJob) -> None:
        job.heartbeat = now_ms()
        await self._jobs.insert(job.to_document())

    async def get_for(self, ctx: RequestContext, job_id: str) -> ExportJob | None:
        """The job if ``ctx``'s caller started it (``JobStore.get_for``), else None."""
        doc = await self._jobs.get_for(ctx, job_id)
        return ExportJob.from_document(doc) if doc else None

    async def beat(self, job: ExportJob, progress: str) -> bool:
        """Refresh the heartbeat; False when the job was cancelled (or taken away) meanwhile."""
        return await self._jobs.update(job.id, job.owner, set_fields={"progress": progress})

    async def complete(self, job: ExportJob, output: list[OutputFile], ttl_seconds: int) -> bool:
        return await self._jobs.update(job.id, job.owner, set_fields={
            "status": COMPLETED, "progress": "completed", "output": [asdict(o) for o in output],
            "expires": now_ms() + timedelta(seconds=ttl_seconds)})

    async def fail(self, job: ExportJob, message: str) -> bool:
        return await self._jobs.fail(job.id, {"message": message}, owner=job.owner)

    async def fail_if_stale(self, job: ExportJob) -> ExportJob | None:
        """Mark the job failed when its heartbeat stopped (its process died); the updated job or None."""
        doc = await self._jobs.fail_if_stale(job.id, {"message": (
            f"The server process running this export ({job.owner}) stopped responding; start a new export")})
        return ExportJob.from_document(doc) if doc else None

    async def remove(self, job_id: str) -> bool:
        return await self._jobs.remove(job_id)

    async def expired(self, now: datetime) -> list[str]:
        """Ids of the jobs past their expiry that no live process runs (a handful at a time)."""
        return await self._jobs.expired(now)
