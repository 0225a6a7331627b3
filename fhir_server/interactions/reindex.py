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
  unknown job. Progress is kept in the MongoDB collection :data:`JOBS`, so any server process answers.

The job runs in the background of the process that accepted it. It reloads the parameters from the database
first (another process may have committed the change), then streams each type's current documents through
``ResourceStore.iterate`` (the read checkpoint) and writes the new ``sp`` with
``update_one({_id, vid: <vid read>}, {$set: {sp}})``: no new version, no history entry, and a resource
updated meanwhile (new ``vid``) is left alone, since its writer extracted its values already. Documents whose
values did not change are not written. A job interrupted by a process exit stays ``in-progress``; start
another.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import bson

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import SUPPORTED_TYPES, require_supported_type
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.services import Services
from fhir_server.storage.client import CODEC_OPTIONS
from fhir_server.storage.documents import instant, now_ms

JOBS = "reindex_jobs"
BATCH = 500
IN_PROGRESS, COMPLETED, FAILED = "in-progress", "completed", "failed"
_log = logging.getLogger("fhir_server.reindex")
_running: set[asyncio.Task[None]] = set()  # strong references: a bare create_task may be garbage collected


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
    job_id = uuid.uuid4().hex
    by_type = {t: {"total": await services.store.count(ctx, t, {}), "processed": 0, "updated": 0, "skipped": 0}
               for t in types}
    job = {"_id": job_id, "status": IN_PROGRESS, "types": types, "byType": by_type,
           "total": sum(v["total"] for v in by_type.values()), "processed": 0, "updated": 0, "skipped": 0,
           "started": now_ms(), "finished": None, "error": None, "caller": ctx.caller}
    await services.store.db[JOBS].insert_one(job)
    task = asyncio.create_task(run_job(ctx, services, job_id, types))
    _running.add(task)
    task.add_done_callback(_running.discard)
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
    job = await services.store.db[JOBS].find_one({"_id": job_id})
    if job is None or job.get("caller") != ctx.caller:  # another caller's job does not exist for this one
        raise NotFound(f"No reindex job {job_id!r}")
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


async def run_job(ctx: RequestContext, services: Services, job_id: str, types: Iterable[str]) -> None:
    """Reindex ``types``, recording progress in the job document; never raises (failures are recorded)."""
    jobs = services.store.db[JOBS]
    try:
        await services.reload_search_parameters()
        for kind in types:
            await reindex_type(ctx, services, kind, job_id)
        await jobs.update_one({"_id": job_id}, {"$set": {"status": COMPLETED, "finished": now_ms()}})
    except Exception as exc:  # recorded for the status request; the server keeps serving
        _log.exception("reindex job %s failed", job_id)
        await jobs.update_one({"_id": job_id},
                              {"$set": {"status": FAILED, "finished": now_ms(), "error": str(exc)}})


async def reindex_type(ctx: RequestContext, services: Services, resource_type: str, job_id: str | None = None) -> None:
    """Re-extract ``sp`` of every current ``resource_type`` document, batch by batch."""
    batch: list[tuple[str, int, dict[str, Any]]] = []
    processed = 0
    projection = {"vid": 1, "resource": 1, "sp": 1}
    async for doc in services.store.iterate(ctx, resource_type, {}, projection=projection, sort=[("_id", 1)]):
        processed += 1
        values = services.index_values(doc["resource"])
        if not _same(values, doc.get("sp")):
            batch.append((doc["_id"], doc["vid"], values))
        if processed % BATCH == 0:
            await _flush(services, resource_type, job_id, batch, BATCH)
            batch = []
    await _flush(services, resource_type, job_id, batch, processed % BATCH)


def _same(new: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Equal as stored (the client decodes Decimal128 to Decimal, so compare the BSON)."""
    return stored is not None and bson.encode(new, codec_options=CODEC_OPTIONS) == bson.encode(
        stored, codec_options=CODEC_OPTIONS)


async def _flush(services: Services, resource_type: str, job_id: str | None,
                 batch: list[tuple[str, int, dict[str, Any]]], processed: int) -> None:
    updated = await write_index_values(services, resource_type, batch)
    if job_id is None:
        return
    skipped = len(batch) - updated
    await services.store.db[JOBS].update_one({"_id": job_id}, {"$inc": {
        "processed": processed, "updated": updated, "skipped": skipped,
        f"byType.{resource_type}.processed": processed, f"byType.{resource_type}.updated": updated,
        f"byType.{resource_type}.skipped": skipped}})


async def write_index_values(services: Services, resource_type: str,
                             batch: list[tuple[str, int, dict[str, Any]]]) -> int:
    """Set ``sp`` of the version read (``_id`` and ``vid`` both match), without a new version; returns how many
    documents were still at that version (``ResourceStore.set_search_values``)."""
    return await services.store.set_search_values(RequestContext.system(), resource_type, batch)
