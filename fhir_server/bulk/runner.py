"""The export itself: an asyncio task in the process that accepted the kick-off.

For each type, one MongoDB cursor (``ResourceStore.iterate``: access filter, no tombstones, ``batch_size``
documents at a time) is streamed line by line into NDJSON files, so memory stays flat whatever the export's
size (engineering notes: Microsoft fhir-server #3755). The task refreshes the job's heartbeat every
``HEARTBEAT_SECONDS``; a failed heartbeat update means the job was cancelled, and the task stops and deletes
its files. See ``fhir_server.bulk.jobs`` for what happens when the process dies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fhir_server.bulk import jobs as jobs_module
from fhir_server.bulk.jobs import ExportJob, ExportJobs, OutputFile
from fhir_server.bulk.ndjson import MAX_PER_FILE, NdjsonWriter, job_dir, remove_job_files
from fhir_server.bulk.params import filter_pairs
from fhir_server.bulk.scope import GROUP, PATIENT, all_of, any_of, compartment_filter, time_filter
from fhir_server.cohorts import cohort_patient_ids
from fhir_server.context import RequestContext
from fhir_server.interactions.search import compiled_filter
from fhir_server.services import Services

log = logging.getLogger(__name__)
BATCH_SIZE = 500
_RUNNING: dict[str, asyncio.Task[None]] = {}


class Cancelled(Exception):
    """The job document is gone or no longer ours: stop and clean up."""


def start(services: Services, job: ExportJob) -> None:
    """Run ``job`` in the background; the task is kept referenced until it ends."""
    task = asyncio.create_task(run(services, job), name=f"bulk-export-{job.id}")
    _RUNNING[job.id] = task
    task.add_done_callback(lambda _t: _RUNNING.pop(job.id, None))


def running_here(job_id: str) -> bool:
    return job_id in _RUNNING


def cancel_here(job_id: str) -> None:
    """Cancel the task of ``job_id`` if this process runs it (others notice at their next heartbeat)."""
    task = _RUNNING.get(job_id)
    if task is not None:
        task.cancel()


async def wait(job_id: str) -> None:
    """Wait for this process's task of ``job_id`` to end (tests and the benchmark)."""
    task = _RUNNING.get(job_id)
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def run(services: Services, job: ExportJob) -> None:
    """Export, then record the manifest; on cancellation or failure remove the files."""
    store = ExportJobs(services.store)
    export_dir = services.settings.export_dir
    try:
        output = await export_all(services, store, job)
    except (Cancelled, asyncio.CancelledError):
        remove_job_files(export_dir, job.id)
        return
    except Exception as exc:  # anything: the client learns it from the status request
        log.exception("bulk export %s failed", job.id)
        remove_job_files(export_dir, job.id)
        await store.fail(job, f"The export failed: {exc}")
        return
    if not await store.complete(job, output, services.settings.export_ttl_seconds):
        remove_job_files(export_dir, job.id)  # cancelled while finishing


async def export_all(services: Services, store: ExportJobs, job: ExportJob) -> list[OutputFile]:
    """Write every type's files; the manifest's ``output`` (types without resources have no file)."""
    ctx = job.context()
    patient_ids = await _members(ctx, services, job)
    directory = job_dir(services.settings.export_dir, job.id)
    heartbeat = Heartbeat(store, job)
    output: list[OutputFile] = []
    for index, resource_type in enumerate(job.types):
        heartbeat.where = f"{resource_type} ({index + 1} of {len(job.types)} types)"
        query = await type_query(ctx, services, job, resource_type, patient_ids)
        with NdjsonWriter(directory, resource_type, MAX_PER_FILE) as writer:
            # No sort: a sort the index cannot serve would be done in memory (and fail on big exports).
            cursor = services.store.iterate(ctx, resource_type, query, batch_size=BATCH_SIZE,
                                            projection={"resource": 1})
            async for doc in cursor:
                writer.write(doc["resource"])
                await heartbeat.tick()
        output.extend(writer.files)
        await heartbeat.beat()
    return output


async def _members(ctx: RequestContext, services: Services, job: ExportJob) -> list[str] | None:
    """The Group's member ids (group level), None for the other levels (no restriction)."""
    if job.level != GROUP or job.group_id is None:
        return None

    return sorted(await cohort_patient_ids(ctx, services, job.group_id))


async def type_query(ctx: RequestContext, services: Services, job: ExportJob, resource_type: str,
                     patient_ids: list[str] | None) -> dict[str, Any]:
    """Level scope AND time window AND (any of the type's ``_typeFilter`` searches)."""
    scope: dict[str, Any] = {}
    if job.level in (PATIENT, GROUP):
        scope = compartment_filter(services.search_parameters, resource_type, patient_ids)
    searches = [await search_filter(ctx, services, resource_type, q)
                for q in job.type_filters.get(resource_type, [])]
    return all_of(scope, time_filter(job.since, job.transaction_time), any_of(searches))


async def search_filter(ctx: RequestContext, services: Services, resource_type: str, query: str) -> dict[str, Any]:
    """The MongoDB filter of one ``_typeFilter`` search (chains and ``_has`` resolved by the search module)."""
    return await compiled_filter(ctx, services, resource_type, filter_pairs(query))


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
