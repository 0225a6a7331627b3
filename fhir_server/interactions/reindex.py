"""``$reindex``: re-extract the search index values (``sp``) of stored resources after SearchParameters change.

Runtime SearchParameters (https://hl7.org/fhir/R4/searchparameter.html) take effect for new writes as soon as
they are committed (``Services.after_commit`` reloads the registry); resources stored before keep the index
values of the parameters in force when they were written, until they are reindexed here.

* ``POST [base]/$reindex`` (every type, or ``_type=A,B`` in the query or a Parameters body) and
  ``POST [base]/[type]/$reindex`` start a job and answer ``202 Accepted`` with
  ``Content-Location: [base]/$reindex-status?job=<id>`` (the asynchronous pattern of
  https://hl7.org/fhir/R4/async.html).
* ``GET [base]/$reindex-status?job=<id>``: ``202`` with ``X-Progress`` while the job runs, ``200`` when it is
  done, ``500`` when it failed, each with a Parameters resource (status, counts per type); ``404`` for an
  unknown job. Progress is kept in the job store of ``storage/`` (kind ``reindex``), so any server process
  answers.

The job runs in the background of the process that accepted it. It reloads the parameters from the database
first (another process may have committed the change), then streams each type's current documents through
``ResourceStore.iterate`` (the read checkpoint) and writes the new ``sp`` with
``update_one({_id, vid: <vid read>}, {$set: {sp}})``: no new version, no history entry, and a resource
updated meanwhile (new ``vid``) is left alone, since its writer extracted its values already. Documents whose
values did not change are not written.

Each type is read in ``_id`` order, and every progress update (every :data:`BATCH` documents, and at the end of
each type) records the last ``_id`` done (``resume``) and refreshes the job's heartbeat. A job whose process
died (heartbeat older than ``STALE_AFTER_SECONDS``, see ``fhir_server.storage.jobs``) is taken over by the next
process that is asked for its status, or that starts a reindex, and resumed after its last recorded ``_id``:
it never stays ``in-progress``. Finished jobs expire after :data:`KEEP_FINISHED`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import SUPPORTED_TYPES, require_supported_type
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.services import Services
from fhir_server.storage.documents import instant, now_ms
from fhir_server.storage.jobs import COMPLETED, FAILED, IN_PROGRESS, PROCESS, JobStore
from fhir_server.storage.store import same_as_stored

REINDEX = "reindex"  # the kind of the job documents
BATCH = 500
KEEP_FINISHED = timedelta(days=1)  # how long the status of a finished job stays answerable
_log = logging.getLogger("fhir_server.reindex")
_running: dict[str, asyncio.Task[None]] = {}  # strong references: a bare create_task may be garbage collected


def register(registry: OperationRegistry) -> None:
    """Add ``$reindex`` (system and type level, POST) and ``$reindex-status`` (system, GET), and the write
    check that refuses unusable SearchParameters before they are stored (see ``catalog.write_checks``)."""
    registry.register(OperationSpec(
        "reindex", kickoff, frozenset({"system", "type"}), methods=frozenset({"POST"}),
        documentation="Re-extract the search index values of stored resources (asynchronous; 202 + "
                      "Content-Location of the status)"))
    registry.register(OperationSpec(
        "reindex-status", status, frozenset({"system"}), methods=frozenset({"GET"}),
        documentation="Progress of a $reindex job: 202 while running, 200 when completed"))


async def check_search_parameter(_uow: Any, resource: dict[str, Any], _resolve: Any) -> list[Issue]:
    """A SearchParameter the engine cannot use (missing code/base/type, unknown type, an expression that does
    not compile) is refused with 422 instead of being stored and then failing every registry reload."""
    if resource.get("resourceType") != "SearchParameter":
        return []
    try:
        SearchParameterRegistry().add_or_replace(resource)
    except InvalidRequest as exc:
        return list(exc.issues)
    return []


# -- kick-off and status -------------------------------------------------------------------------------------


async def kickoff(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    types = _types(op)
    await _housekeeping(services)
    job_id = uuid.uuid4().hex
    every = RequestContext.system(ctx.base_url)  # what the job will process (see ``_context``)
    by_type = {t: {"total": await services.store.count(every, t, {}), "processed": 0, "updated": 0, "skipped": 0}
               for t in types}
    now = now_ms()
    job = {"_id": job_id, "types": types, "byType": by_type,
           "total": sum(v["total"] for v in by_type.values()), "processed": 0, "updated": 0, "skipped": 0,
           "started": now, "finished": None, "error": None, "expires": now + KEEP_FINISHED, "resume": None,
           "owner": PROCESS, "caller": ctx.caller, "role": ctx.role.value, "center": ctx.center,
           "scopes": sorted(ctx.scopes), "baseUrl": ctx.base_url}
    await services.store.jobs(REINDEX).insert(job)
    _start(services, job)
    location = ctx.url(f"$reindex-status?{urlencode({'job': job_id})}")
    outcome = operation_outcome([Issue("information", "informational",
                                       f"Reindexing {job['total']} resources of {', '.join(types)}; "
                                       f"status at {location}")])
    return OperationResponse(202, outcome, headers={"Content-Location": location})


def _types(op: OperationRequest) -> list[str]:
    if op.level == "type" and op.resource_type:
        return [op.resource_type]
    raw = op.param("_type")
    if not raw:
        return list(SUPPORTED_TYPES)
    types = [t.strip() for t in raw.split(",") if t.strip()]
    for kind in types:
        require_supported_type(kind)
    if not types:
        raise InvalidRequest("_type: no resource type given", code="invalid")
    return types


async def status(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    job_id = op.param("job")
    if not job_id:
        raise InvalidRequest("$reindex-status needs job=<id>", code="required")
    job = await services.store.jobs(REINDEX).get_for(ctx, job_id)
    if job is None:  # another caller's job does not exist for this one
        raise NotFound(f"No reindex job {job_id!r}")
    job = await _resume_if_stale(services, job)
    body = _parameters(job)
    if job["status"] == FAILED:
        return OperationResponse(500, body)
    if job["status"] == COMPLETED:
        return OperationResponse(200, body)
    percent = 100 * job["processed"] // job["total"] if job["total"] else 0
    return OperationResponse(202, body, headers={"X-Progress": f"{percent}% ({job['processed']} of {job['total']})",
                                                 "Retry-After": "1"})


def _parameters(job: dict[str, Any]) -> dict[str, Any]:
    def moment(value: datetime | None) -> list[dict[str, Any]]:
        return [{"valueInstant": instant(value)}] if value else []

    params: list[dict[str, Any]] = [
        {"name": "job", "valueString": job["_id"]},
        {"name": "status", "valueCode": job["status"]},
        {"name": "total", "valueInteger": job["total"]},
        {"name": "processed", "valueInteger": job["processed"]},
        {"name": "updated", "valueInteger": job["updated"]},
        {"name": "skipped", "valueInteger": job["skipped"]},
        *({"name": "started", **m} for m in moment(job["started"])),
        *({"name": "finished", **m} for m in moment(job.get("finished"))),
    ]
    if job.get("error"):
        params.append({"name": "error", "valueString": job["error"]})
    for kind, counts in job["byType"].items():
        params.append({"name": "type", "part": [{"name": "type", "valueCode": kind},
                                                *({"name": k, "valueInteger": v} for k, v in counts.items())]})
    return {"resourceType": "Parameters", "parameter": params}


# -- the job ---------------------------------------------------------------------------------------------------


class JobLost(Exception):
    """The job is no longer this process's to run (taken over by another process after a stall)."""


@dataclass(frozen=True)
class Progress:
    """Where a running job records its progress: the job store, the job, the owner (this process)."""

    jobs: JobStore
    job_id: str
    owner: str

    async def record(self, resource_type: str, counts: dict[str, int], after: str | None, done: bool) -> None:
        """Add ``counts`` (processed, updated, skipped) and the last ``_id`` done; refreshes the heartbeat."""
        inc = {**counts, **{f"byType.{resource_type}.{k}": v for k, v in counts.items()}}
        resume = {"type": resource_type, "after": after, "done": done}
        if not await self.jobs.update(self.job_id, self.owner, set_fields={"resume": resume}, inc=inc):
            raise JobLost(self.job_id)


def _start(services: Services, job: dict[str, Any]) -> None:
    """Run (or resume) ``job`` in the background of this process."""
    task = asyncio.create_task(run_job(services, job), name=f"reindex-{job['_id']}")
    _running[job["_id"]] = task
    task.add_done_callback(lambda _t: _running.pop(job["_id"], None))


def _context(job: dict[str, Any]) -> RequestContext:
    """The server's own context: re-extracting index values is maintenance of every stored resource, not a read
    by the caller (a maintainer, who reads no clinical data, reindexes after adding a SearchParameter). The
    caller sees only counts, and only of its own job."""
    return RequestContext.system(job["baseUrl"])


async def _resume_if_stale(services: Services, job: dict[str, Any]) -> dict[str, Any]:
    """The job, taken over and resumed here when its process died (its heartbeat stopped)."""
    if job["status"] != IN_PROGRESS or job["_id"] in _running:
        return job
    taken = await services.store.jobs(REINDEX).take_over_if_stale(job["_id"])
    if taken is None:
        return job
    _log.warning("reindex job %s: its process stopped; resuming it here", job["_id"])
    _start(services, taken)
    return taken


async def _housekeeping(services: Services) -> None:
    """At each kick-off: expired jobs go; jobs whose process died are resumed here."""
    jobs = services.store.jobs(REINDEX)
    for job_id in await jobs.expired(now_ms()):
        await jobs.remove(job_id)
    for job_id in await jobs.stale():
        job = await jobs.get(job_id)
        if job is not None:
            await _resume_if_stale(services, job)


def _remaining(job: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """The types still to do, each with the ``_id`` after which to start (None: from the first)."""
    resume = job.get("resume")
    types: list[str] = job["types"]
    if not resume:
        yield from ((kind, None) for kind in types)
        return
    at = types.index(resume["type"])
    if not resume["done"]:
        yield resume["type"], resume["after"]
    yield from ((kind, None) for kind in types[at + 1:])


async def run_job(services: Services, job: dict[str, Any]) -> None:
    """Reindex the job's types (from where it stopped, when resumed), recording progress in the job document;
    never raises (failures are recorded)."""
    jobs = services.store.jobs(REINDEX)
    progress = Progress(jobs, job["_id"], job["owner"])
    try:
        await services.reload_search_parameters()
        for kind, after in _remaining(job):
            await reindex_type(_context(job), services, kind, progress, after=after)
        now = now_ms()
        await jobs.update(progress.job_id, progress.owner,
                          set_fields={"status": COMPLETED, "finished": now, "expires": now + KEEP_FINISHED})
    except JobLost:
        _log.warning("reindex job %s was taken over by another process; stopping here", progress.job_id)
    except Exception as exc:  # recorded for the status request; the server keeps serving
        _log.exception("reindex job %s failed", progress.job_id)
        now = now_ms()
        await jobs.fail(progress.job_id, {"finished": now, "error": str(exc), "expires": now + KEEP_FINISHED},
                        owner=progress.owner)


async def reindex_type(ctx: RequestContext, services: Services, resource_type: str,
                       progress: Progress | None = None, *, after: str | None = None) -> None:
    """Re-extract ``sp`` of every current ``resource_type`` document (with an ``_id`` above ``after``, when
    given), batch by batch."""
    batch: list[tuple[str, int, dict[str, Any]]] = []
    processed = 0
    last = after
    projection = {"vid": 1, "resource": 1, "sp": 1}
    query = {"_id": {"$gt": after}} if after is not None else {}
    async for doc in services.store.iterate(ctx, resource_type, query, projection=projection, sort=[("_id", 1)]):
        processed += 1
        last = doc["_id"]
        values = services.index_values(doc["resource"])
        if not same_as_stored(values, doc.get("sp")):
            batch.append((doc["_id"], doc["vid"], values))
        if processed % BATCH == 0:
            await _flush(services, resource_type, progress, batch, BATCH, last, done=False)
            batch = []
    await _flush(services, resource_type, progress, batch, processed % BATCH, last, done=True)


async def _flush(services: Services, resource_type: str, progress: Progress | None,
                 batch: list[tuple[str, int, dict[str, Any]]], processed: int, last: str | None, *,
                 done: bool) -> None:
    updated = await write_index_values(services, resource_type, batch)
    if progress is not None:
        counts = {"processed": processed, "updated": updated, "skipped": len(batch) - updated}
        await progress.record(resource_type, counts, last, done)


async def write_index_values(services: Services, resource_type: str,
                             batch: list[tuple[str, int, dict[str, Any]]]) -> int:
    """Set ``sp`` of the version read (``_id`` and ``vid`` both match), without a new version; returns how many
    documents were still at that version (``ResourceStore.set_search_values``)."""
    return await services.store.set_search_values(RequestContext.system(), resource_type, batch)
