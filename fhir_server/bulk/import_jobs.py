"""Import jobs (``$import``), kept by the one job store of ``storage/`` (kind ``import``) like exports
(``bulk/jobs.py``): every server process answers the same status, the running process refreshes the heartbeat
with each batch, and a job whose process died is taken over by the next status request and resumed at its
first unfinished input (at most ``FHIR_EXPORT_MAX_ATTEMPTS`` runs in all). Re-reading an input is harmless for
resources with an id (an identical resubmission stores no new version); resources without one would be created
again, which the README says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir_server.bulk.jobs import CallerBoundJob, new_job_id
from fhir_server.permissions import Role
from fhir_server.storage.documents import now_ms
from fhir_server.storage.jobs import COMPLETED, IN_PROGRESS, PROCESS, JobStore
from fhir_server.storage.store import ResourceStore

IMPORT = "import"
__all__ = ["ImportInput", "ImportJob", "ImportJobs", "new_job_id"]


@dataclass
class ImportInput:
    """One input file and what became of it: resources stored, lines that failed, the error file written."""

    url: str
    type: str | None = None
    count: int = 0
    errors: int = 0
    error_file: str | None = None  # the name of its error NDJSON, when a line failed


@dataclass
class ImportJob(CallerBoundJob):
    id: str
    request: str
    transaction_time: datetime
    expires: datetime
    base_url: str
    caller: str
    scopes: list[str]
    inputs: list[ImportInput]
    center: str | None = None
    role: str = Role.SYSTEM.value
    status: str = IN_PROGRESS
    owner: str = PROCESS
    heartbeat: datetime | None = None
    progress: str = "accepted"
    inputs_done: int = 0
    attempts: int = 1
    message: str | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ImportJob:
        data = cls.fields_of(doc)
        data["inputs"] = [ImportInput(**i) for i in data.get("inputs", [])]
        return cls(**data)


class ImportJobs:
    def __init__(self, store: ResourceStore) -> None:
        self._jobs: JobStore = store.jobs(IMPORT)

    async def insert(self, job: ImportJob) -> None:
        job.heartbeat = now_ms()
        await self._jobs.insert(job.to_document())

    async def get(self, job_id: str) -> ImportJob | None:
        doc = await self._jobs.get(job_id)
        return ImportJob.from_document(doc) if doc else None

    async def beat(self, job: ImportJob, progress: str) -> bool:
        return await self._jobs.update(job.id, job.owner, attempt=job.attempts, set_fields={"progress": progress})

    async def input_done(self, job: ImportJob) -> bool:
        return await self._jobs.update(job.id, job.owner, attempt=job.attempts, set_fields={
            "inputs": [asdict(i) for i in job.inputs], "inputs_done": job.inputs_done})

    async def complete(self, job: ImportJob, ttl_seconds: int) -> bool:
        return await self._jobs.update(job.id, job.owner, attempt=job.attempts, set_fields={
            "status": COMPLETED, "progress": "completed", "inputs": [asdict(i) for i in job.inputs],
            "inputs_done": len(job.inputs), "expires": now_ms() + timedelta(seconds=ttl_seconds)})

    async def fail(self, job: ImportJob, message: str) -> bool:
        return await self._jobs.fail(job.id, {"message": message}, owner=job.owner, attempt=job.attempts)

    async def take_over_if_stale(self, job: ImportJob, max_attempts: int) -> ImportJob | None:
        doc = await self._jobs.take_over_if_stale(job.id, max_attempts=max_attempts)
        return ImportJob.from_document(doc) if doc else None

    async def fail_if_stale(self, job: ImportJob) -> ImportJob | None:
        doc = await self._jobs.fail_if_stale(job.id, {"message": (
            f"The server processes running this import stopped responding {job.attempts} times; start it again")})
        return ImportJob.from_document(doc) if doc else None

    async def remove(self, job_id: str) -> bool:
        return await self._jobs.remove(job_id)

    async def expired(self, now: datetime) -> list[str]:
        return await self._jobs.expired(now)
