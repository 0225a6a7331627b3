"""Export jobs, kept by the one job store of ``storage/`` (kind ``export``, see ``fhir_server.storage.jobs``), so
that every server process answers the same status and any process can finish a job.

A job is created ``in-progress`` by the process that accepted the kick-off; that process runs it as an asyncio
task and refreshes ``heartbeat`` every few seconds. After each resource type it records the files written so
far (``output``) and how many types are done (``types_done``). If the process dies, the heartbeat stops: the next
status request or the periodic sweep of any process sees a heartbeat older than ``STALE_AFTER_SECONDS``, takes
the job over (``attempts`` + 1, at most ``FHIR_EXPORT_MAX_ATTEMPTS`` in all, then the job fails), removes the
half-written files and resumes after the last type done. The runner's updates match its ``owner`` and its
attempt, so a process that lost the job (stalled, then woke up) can no longer write to it. Cancelling (DELETE
on the status URL, export.html#bulk-data-delete-request) removes the job document and its files; the running
task notices at its next heartbeat and removes what it was writing. Jobs and files expire
``export_ttl_seconds`` after completion.
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
    attempt: int = 1  # the run of the job that wrote it (part of its GridFS id)


class CallerBoundJob:
    """What a bulk job (export, import) keeps of the caller that started it, and its MongoDB document form.
    Mixed into the jobs' dataclasses, which declare these fields."""

    id: str
    base_url: str
    caller: str
    scopes: list[str]
    center: str | None
    role: str

    def context(self) -> RequestContext:
        """The kick-off caller's context: the task reads and writes exactly what the caller may."""
        return RequestContext(base_url=self.base_url, caller=self.caller, scopes=frozenset(self.scopes),
                              center=self.center, role=Role(self.role))

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass
        doc["_id"] = doc.pop("id")
        return doc

    @staticmethod
    def fields_of(doc: dict[str, Any]) -> dict[str, Any]:
        """The dataclass fields of a stored job document (``_id`` back to ``id``, the store's ``kind`` dropped)."""
        data = {k: v for k, v in doc.items() if k != "kind"}
        data["id"] = data.pop("_id")
        return data


@dataclass
class ExportJob(CallerBoundJob):
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
    patient_ids: list[str] | None = None  # the ``patient`` parameter: only these Patients' compartments
    elements: list[str] = field(default_factory=list)  # ``_elements``: the root elements to keep (none: all)
    associated: list[str] = field(default_factory=list)  # ``includeAssociatedData``: Provenance after the types
    output_format: str = "application/fhir+ndjson"
    status: str = IN_PROGRESS
    owner: str = PROCESS
    heartbeat: datetime | None = None
    progress: str = "accepted"
    output: list[OutputFile] = field(default_factory=list)  # also while running: the finished types' files
    message: str | None = None  # why it failed
    attempts: int = 1  # runs started: the first, then one per takeover
    types_done: int = 0  # how many of ``types`` are finished (their files are in ``output``), then 1 more
    # once the associated Provenance is (when ``associated``)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ExportJob:
        data = cls.fields_of(doc)
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

    async def get(self, job_id: str) -> ExportJob | None:
        """The job, whoever started it: the server's own housekeeping (the sweep), never a caller's request."""
        doc = await self._jobs.get(job_id)
        return ExportJob.from_document(doc) if doc else None

    async def get_for(self, ctx: RequestContext, job_id: str) -> ExportJob | None:
        """The job if ``ctx``'s caller started it (``JobStore.get_for``), else None."""
        doc = await self._jobs.get_for(ctx, job_id)
        return ExportJob.from_document(doc) if doc else None

    async def beat(self, job: ExportJob, progress: str) -> bool:
        """Refresh the heartbeat; False when the job was cancelled (or taken away) meanwhile."""
        return await self._jobs.update(job.id, job.owner, set_fields={"progress": progress}, attempt=job.attempts)

    async def type_done(self, job: ExportJob, output: list[OutputFile], types_done: int) -> bool:
        """Record the files of the types finished so far (where a takeover resumes); False as for ``beat``."""
        return await self._jobs.update(job.id, job.owner, attempt=job.attempts, set_fields={
            "output": [asdict(o) for o in output], "types_done": types_done})

    async def complete(self, job: ExportJob, output: list[OutputFile], ttl_seconds: int) -> bool:
        return await self._jobs.update(job.id, job.owner, attempt=job.attempts, set_fields={
            "status": COMPLETED, "progress": "completed", "output": [asdict(o) for o in output],
            "types_done": len(job.types), "expires": now_ms() + timedelta(seconds=ttl_seconds)})

    async def fail(self, job: ExportJob, message: str) -> bool:
        return await self._jobs.fail(job.id, {"message": message}, owner=job.owner, attempt=job.attempts)

    async def release(self, job: ExportJob) -> bool:
        """This run stops unfinished (its process shuts down): another process may take the job over now."""
        return await self._jobs.release(job.id, job.owner, attempt=job.attempts)

    async def take_over_if_stale(self, job: ExportJob, max_attempts: int) -> ExportJob | None:
        """This process's run of a job whose process died, unless it ran ``max_attempts`` times already (or
        another process took it first): the job as taken, or None."""
        doc = await self._jobs.take_over_if_stale(job.id, max_attempts=max_attempts)
        return ExportJob.from_document(doc) if doc else None

    async def stale(self) -> list[str]:
        """Ids of running exports whose process died."""
        return await self._jobs.stale()

    async def fail_if_stale(self, job: ExportJob) -> ExportJob | None:
        """Mark the job failed when its heartbeat stopped (its process died) and no takeover is left; the
        updated job or None."""
        doc = await self._jobs.fail_if_stale(job.id, {"message": (
            f"The server processes running this export stopped responding {job.attempts} times (last: "
            f"{job.owner}); start a new export")})
        return ExportJob.from_document(doc) if doc else None

    async def remove(self, job_id: str) -> bool:
        return await self._jobs.remove(job_id)

    async def expired(self, now: datetime) -> list[str]:
        """Ids of the jobs past their expiry that no live process runs (a handful at a time)."""
        return await self._jobs.expired(now)
