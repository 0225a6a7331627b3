"""The export itself: an asyncio task in the process that accepted the kick-off (or took the job over).

For each type, one MongoDB cursor (``ResourceStore.iterate``: access filter, no tombstones, ``batch_size``
documents at a time) is streamed line by line into NDJSON files in GridFS, so memory stays flat whatever the
export's size (engineering notes: Microsoft fhir-server #3755). The task refreshes the job's heartbeat every
``HEARTBEAT_SECONDS`` and records each finished type; a refused update means the job was cancelled or taken
over, and the task stops and removes the files it had not recorded. See ``fhir_server.bulk.jobs`` for what
happens when the process dies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fhir_server import metrics
from fhir_server.bulk import jobs as jobs_module
from fhir_server.bulk.associated import PROVENANCE, write_associated_provenance
from fhir_server.bulk.jobs import ExportJob, ExportJobs, OutputFile
from fhir_server.bulk.ndjson import MAX_PER_FILE, NdjsonWriter, file_id, remove_job_files
from fhir_server.bulk.params import elements_of
from fhir_server.bulk.queries import type_query
from fhir_server.bulk.scope import GROUP
from fhir_server.cohorts import cohort_patient_ids
from fhir_server.context import RequestContext
from fhir_server.interactions.shaping import select_elements
from fhir_server.services import Services

log = logging.getLogger(__name__)
BATCH_SIZE = 500
_RUNNING: dict[str, asyncio.Task[None]] = {}
_RUNS: dict[asyncio.Task[None], ExportRun] = {}  # what each task runs, to hand it over at shutdown


class Cancelled(Exception):
    """The job document is gone or no longer ours: stop and clean up."""


def start(services: Services, job: ExportJob) -> None:
    """Run ``job`` (or resume it, after a takeover) in the background; the task is kept referenced until it ends."""
    export = ExportRun(services, job)
    task = asyncio.create_task(run(export), name=f"bulk-export-{job.id}-{job.attempts}")
    _RUNNING[job.id] = task
    _RUNS[task] = export

    def forget(done: asyncio.Task[None]) -> None:
        _RUNS.pop(done, None)
        if _RUNNING.get(job.id) is done:  # not a later run of the same job (a takeover in this process)
            del _RUNNING[job.id]

    task.add_done_callback(forget)


def cancel_here(job_id: str) -> None:
    """Cancel the task of ``job_id`` if this process runs it (others notice at their next heartbeat)."""
    task = _RUNNING.get(job_id)
    if task is not None:
        task.cancel()


async def stop_all() -> None:
    """Process shutdown: stop every export running here and hand each job over, so that another process
    resumes it at once instead of after ``STALE_AFTER_SECONDS``."""
    runs = list(_RUNS.items())
    for task, _ in runs:
        task.cancel()
    await asyncio.gather(*(task for task, _ in runs), return_exceptions=True)
    for _, export in runs:
        await export.hand_over()


async def wait(job_id: str) -> None:
    """Wait for this process's task of ``job_id`` to end (tests and the benchmark)."""
    task = _RUNNING.get(job_id)
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def run(export: ExportRun) -> None:
    """Export (from the first type not done yet), then record the manifest. Cancelled or taken away: remove
    the files this run wrote and did not record; failed: remove every file of the job."""
    job = export.job
    try:
        output = await export.all_types()
    except (Cancelled, asyncio.CancelledError):  # asyncio's: a DELETE here, or the process shuts down
        await export.discard_unrecorded()
        return
    except Exception as exc:  # anything: the client learns it from the status request
        log.exception("bulk export %s failed", job.id)
        await export.discard_all()
        if await export.store.fail(job, f"The export failed: {exc}"):
            metrics.export_job("failed")
        return
    if await export.store.complete(job, output, export.services.settings.export_ttl_seconds):
        metrics.export_job("completed")


class ExportRun:
    """One run of an export job: the types it writes and the files it wrote but did not record yet."""

    def __init__(self, services: Services, job: ExportJob) -> None:
        self.services = services
        self.job = job
        self.store = ExportJobs(services.store)
        self.files = services.store.files()
        self.unrecorded: list[OutputFile] = []

    async def all_types(self) -> list[OutputFile]:
        """Write the files of every type not done yet; the manifest's ``output`` (types without resources have
        no file). After each type its files are recorded in the job, where a takeover resumes."""
        job = self.job
        ctx = job.context()
        patient_ids = await _members(ctx, self.services, job)
        heartbeat = Heartbeat(self.store, job)
        output = list(job.output)
        for index in range(job.types_done, len(job.types)):
            resource_type = job.types[index]
            heartbeat.where = f"{resource_type} ({index + 1} of {len(job.types)} types)"
            query = await type_query(ctx, self.services, job, resource_type, patient_ids)
            elements = elements_of(job.elements, resource_type)
            async with NdjsonWriter(self.files, job.id, job.attempts, resource_type, MAX_PER_FILE) as writer:
                self.unrecorded = writer.files
                # No sort: a sort the index cannot serve would be done in memory (and fail on big exports).
                cursor = self.services.store.iterate(ctx, resource_type, query, batch_size=BATCH_SIZE,
                                                     projection={"resource": 1})
                async for doc in cursor:
                    # _elements: the listed and the mandatory elements, marked SUBSETTED (export.html)
                    await writer.write(select_elements(doc["resource"], elements) if elements else doc["resource"])
                    await heartbeat.tick()
            if not await self.store.type_done(job, [*output, *writer.files], index + 1):
                raise Cancelled(job.id)
            output.extend(writer.files)
            self.unrecorded = []
        if job.associated and job.types_done <= len(job.types):
            output.extend(await self.associated_provenance(ctx, patient_ids, heartbeat, output))
        return output

    async def associated_provenance(self, ctx: RequestContext, patient_ids: list[str] | None, heartbeat: Heartbeat,
                                    output: list[OutputFile]) -> list[OutputFile]:
        """``includeAssociatedData``: the Provenance files after the types' (``bulk/associated.py``), recorded as
        one more step done, where a takeover resumes like after a type."""
        job = self.job
        heartbeat.where = "the associated Provenance"
        elements = elements_of(job.elements, PROVENANCE)

        async def write(resource: dict[str, Any]) -> None:
            await writer.write(select_elements(resource, elements) if elements else resource)
            await heartbeat.tick()

        async with NdjsonWriter(self.files, job.id, job.attempts, PROVENANCE, MAX_PER_FILE,
                                stem="AssociatedProvenance") as writer:
            self.unrecorded = writer.files
            await write_associated_provenance(ctx, self.services, job, patient_ids, write)
        if not await self.store.type_done(job, [*output, *writer.files], len(job.types) + 1):
            raise Cancelled(job.id)
        self.unrecorded = []
        return writer.files

    async def discard_unrecorded(self) -> None:
        """Remove this run's files that no job document lists (best effort: the sweep or expiry cleans up after
        a process that cannot, e.g. one shutting down without its database)."""
        try:
            await self.files.remove([file_id(self.job.id, o) for o in self.unrecorded])
        except Exception:
            log.warning("bulk export %s: could not remove the files of its unfinished type", self.job.id)

    async def hand_over(self) -> None:
        """Let another process resume the job at once (when it still exists and is still this run's)."""
        try:
            if await self.store.release(self.job):
                log.info("bulk export %s: stopped here unfinished; another process will resume it", self.job.id)
        except Exception:
            log.warning("bulk export %s: could not hand it over; it is resumed once its heartbeat is stale",
                        self.job.id)

    async def discard_all(self) -> None:
        try:
            await remove_job_files(self.files, self.job.id)
        except Exception:
            log.warning("bulk export %s: could not remove its files", self.job.id)


async def _members(ctx: RequestContext, services: Services, job: ExportJob) -> list[str] | None:
    """The ids of the Patients whose compartments are exported: the Group's members (group level), those of the
    ``patient`` parameter (among the members, at group level), None for every Patient."""
    chosen = set(job.patient_ids) if job.patient_ids is not None else None
    if job.level != GROUP or job.group_id is None:
        return None if chosen is None else sorted(chosen)
    members = await cohort_patient_ids(ctx, services, job.group_id)
    return sorted(members if chosen is None else members & chosen)


class Heartbeat:
    """Throttled progress updates: at most one write per ``HEARTBEAT_SECONDS``, checked every 500 lines."""

    def __init__(self, store: ExportJobs, job: ExportJob) -> None:
        self.store = store
        self.job = job
        self.where = ""
        self.count = 0
        self._last = time.monotonic()

    async def tick(self) -> None:
        self.count += 1
        if self.count % 500 == 0 and time.monotonic() - self._last >= jobs_module.HEARTBEAT_SECONDS:
            await self.beat()

    async def beat(self) -> None:
        self._last = time.monotonic()
        if not await self.store.beat(self.job, f"in-progress: {self.count} resources written, at {self.where}"):
            raise Cancelled(self.job.id)
