"""``$export`` (system, ``Patient`` type, ``Group`` instance) and ``$export-poll-status`` (GET, DELETE).

Bulk Data Access IG 2.0, https://hl7.org/fhir/uv/bulkdata/STU2/export.html:

* kick-off (#bulk-data-kick-off-request): ``Prefer: respond-async`` required (400), ``Accept`` JSON (406);
  ``202 Accepted`` with ``Content-Location: [base]/$export-poll-status?_jobId=<id>``.
* status (#bulk-data-status-request): ``202`` with ``X-Progress`` and ``Retry-After`` while running; ``200``
  with the JSON manifest (``transactionTime``, ``request``, ``requiresAccessToken``, ``output``, ``error``)
  and ``Expires`` when done; ``500`` with an OperationOutcome when the export failed; ``404`` for unknown,
  cancelled or expired jobs.
* delete (#bulk-data-delete-request): ``202``; the export stops, its files are removed, later polls are 404.

Files are served by ``fhir_server.api.bulk_files`` at ``[base]/_export/<job>/files/<Type>-<n>.ndjson``.
``requiresAccessToken`` is true with ``FHIR_AUTH_MODE=smart`` (the file route needs the bearer token, and checks
the caller), false without authentication (file URLs are unguessable, 128-bit job id). Jobs are only visible to
the caller that started them.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server import fhirjson, metrics
from fhir_server.bulk import runner
from fhir_server.bulk.jobs import FAILED, IN_PROGRESS, ExportJob, ExportJobs, new_job_id
from fhir_server.bulk.ndjson import is_job_id, remove_job_files
from fhir_server.bulk.params import (
    ExportParams,
    check_kickoff_headers,
    collect_params,
    filter_pairs,
    parse_export_params,
)
from fhir_server.bulk.scope import GROUP, PATIENT, SYSTEM, resolve_types
from fhir_server.cohorts import cohort_patient_ids
from fhir_server.context import RequestContext
from fhir_server.errors import Gone, InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.search.parse import parse_search
from fhir_server.services import Services
from fhir_server.storage.documents import instant, now_ms

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
RETRY_AFTER_SECONDS = 2
MANIFEST_MEDIA_TYPE = "application/json"
log = logging.getLogger(__name__)


def register(registry: OperationRegistry) -> None:
    """Add the export operations to ``registry`` (idempotent: specs already present are not added again)."""
    specs = [
        OperationSpec("export", kickoff, frozenset({"system"}), definition=f"{BULK}/export",
                      documentation="Bulk Data system-level export (all resource types)"),
        OperationSpec("export", kickoff, frozenset({"type"}), types=frozenset({"Patient"}),
                      definition=f"{BULK}/patient-export",
                      documentation="Bulk Data export of the Patient compartment of all patients"),
        OperationSpec("export", kickoff, frozenset({"instance"}), types=frozenset({"Group"}),
                      definition=f"{BULK}/group-export",
                      documentation="Bulk Data export of the Patient compartment of the Group's members"),
        OperationSpec("export-poll-status", poll_status, frozenset({"system"}),
                      methods=frozenset({"GET", "DELETE"}),
                      documentation="Status (GET) or cancellation (DELETE) of a bulk export; see Content-Location"),
    ]
    present = {(s.name, tuple(sorted(s.levels)), s.types) for s in registry.all()}
    for spec in specs:
        if (spec.name, tuple(sorted(spec.levels)), spec.types) not in present:
            registry.register(spec)


# -- kick-off ------------------------------------------------------------------------------------------------


async def kickoff(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """Validate, record the job, start it in the background and answer 202 with the status URL."""
    lenient = check_kickoff_headers(op.headers)
    params = parse_export_params(collect_params(op), lenient=lenient)
    level = _level(op)
    types, dropped = resolve_types(services.search_parameters, level, params.types, lenient=lenient)
    type_filters, dropped_filters = check_type_filters(ctx, services, types, params)
    if level == GROUP:
        await _require_group(ctx, services, op.resource_id or "")
    if params.patients is not None:
        await _check_patients(ctx, services, level, op.resource_id, params.patients)
    await purge_expired(services)
    job = _new_job(ctx, services, op, level, types, params, type_filters)
    await ExportJobs(services.store).insert(job)
    runner.start(services, job)
    metrics.export_job("started")
    notes = [*params.ignored, *dropped, *dropped_filters]
    return OperationResponse(202, _accepted_outcome(job, notes), headers={"Content-Location": status_url(ctx, job.id)})


def _level(op: OperationRequest) -> str:
    if op.level == "system":
        return SYSTEM
    if op.level == "type":
        return PATIENT
    return GROUP


def check_type_filters(ctx: RequestContext, services: Services, types: tuple[str, ...],
                       params: ExportParams) -> tuple[dict[str, list[str]], list[str]]:
    """Each ``_typeFilter`` must name an exported type and be a valid search of it, so that mistakes are a
    synchronous 400 rather than a failed job. The search is parsed strictly even under lenient handling: an
    ignored unknown parameter would widen the filter and export more than was asked."""
    kept: dict[str, list[str]] = {}
    dropped: list[str] = []
    for resource_type, queries in params.type_filters.items():
        if resource_type not in types:
            if not params.lenient:
                raise InvalidRequest(f"_typeFilter names {resource_type}, which this export does not include",
                                     code="invalid", expression=("_typeFilter",))
            dropped.append(f"_typeFilter for {resource_type}")
            continue
        for query in queries:
            parse_search(services.search_parameters, resource_type, filter_pairs(query),
                         strict=True, base_url=ctx.base_url)
        kept[resource_type] = list(queries)
    return kept, dropped


async def _check_patients(ctx: RequestContext, services: Services, level: str, group_id: str | None,
                          patients: tuple[str, ...]) -> None:
    """``patient`` (export.html#query-parameters): not for a system-level export; each a Patient the caller may
    read and, at group level, a member of the Group. Otherwise a 400 naming them ("the server SHOULD return details
    via a FHIR OperationOutcome resource in an error response"); another center's patient is not known, as on
    every path."""
    if level == SYSTEM:
        raise InvalidRequest("patient does not apply to a system-level export: use Patient/$export or "
                             "Group/[id]/$export", code="not-supported", expression=("patient",))
    found = await services.store.current_many(ctx, "Patient", list(patients))
    unknown = [i for i in patients if (version := found[i]) is None or version.deleted]
    if unknown:
        raise InvalidRequest(f"patient: {', '.join('Patient/' + i for i in unknown)} not known to this server",
                             code="not-found", expression=("patient",))
    if level == GROUP:
        members = await cohort_patient_ids(ctx, services, group_id or "")
        outside = [i for i in patients if i not in members]
        if outside:
            raise InvalidRequest(f"patient: {', '.join('Patient/' + i for i in outside)} not a member of "
                                 f"Group/{group_id}", code="not-found", expression=("patient",))


async def _require_group(ctx: RequestContext, services: Services, group_id: str) -> None:
    group = await services.store.current(ctx, "Group", group_id)
    if group is None:
        raise NotFound(f"Group/{group_id} is not known")
    if group.deleted:
        raise Gone(f"Group/{group_id} was deleted")


def _new_job(ctx: RequestContext, services: Services, op: OperationRequest, level: str, types: tuple[str, ...],
             params: ExportParams, type_filters: dict[str, list[str]]) -> ExportJob:
    now = now_ms()
    return ExportJob(
        id=new_job_id(), level=level, request=request_url(ctx, op), types=list(types), transaction_time=now,
        expires=now + timedelta(seconds=services.settings.export_ttl_seconds), base_url=ctx.base_url,
        caller=ctx.caller, role=ctx.role.value, scopes=sorted(ctx.scopes), center=ctx.center, group_id=op.resource_id,
        since=params.since, type_filters=type_filters, output_format=params.output_format,
        patient_ids=list(params.patients) if params.patients is not None else None,
        elements=list(params.elements), associated=list(params.associated),
    )


def request_url(ctx: RequestContext, op: OperationRequest) -> str:
    """The kick-off URL for the manifest's ``request`` (a POST's parameters are not repeated in it)."""
    parts = [p for p in (op.resource_type, op.resource_id) if p]
    url = ctx.url(*parts, "$export")
    if op.method == "GET" and op.params:
        url += "?" + urlencode(op.params)
    return url


def status_url(ctx: RequestContext, job_id: str) -> str:
    return ctx.url("$export-poll-status") + "?" + urlencode({"_jobId": job_id})


def file_url(ctx: RequestContext, job_id: str, name: str) -> str:
    return ctx.url("_export", job_id, "files", name)


def _accepted_outcome(job: ExportJob, notes: list[str]) -> dict[str, Any]:
    issues = [Issue("information", "informational", f"Export {job.id} accepted; poll the Content-Location")]
    issues += [Issue("warning", "not-supported", f"Ignored (Prefer: handling=lenient): {n}") for n in notes]
    return operation_outcome(issues)


# -- status and cancellation ---------------------------------------------------------------------------------


async def poll_status(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """GET: progress or manifest; DELETE: cancel and remove the files."""
    job = await visible_job(ctx, services, op.param("_jobId"))
    if op.method == "DELETE":
        return await cancel(services, job)
    if job.status == IN_PROGRESS:
        job = await resume_if_stale(services, job)
    if job.status == IN_PROGRESS:
        return OperationResponse(202, None, headers={
            "X-Progress": job.progress[:100], "Retry-After": str(RETRY_AFTER_SECONDS)})
    if job.status == FAILED:
        outcome = operation_outcome([Issue("error", "exception", job.message or "The export failed")])
        return OperationResponse(500, outcome)
    return OperationResponse(200, fhirjson.dumps(manifest(ctx, job, services.settings.auth_mode == "smart")),
                             media_type=MANIFEST_MEDIA_TYPE,
                             headers={"Expires": format_datetime(job.expires.astimezone(UTC), usegmt=True)})


async def visible_job(ctx: RequestContext, services: Services, job_id: str | None) -> ExportJob:
    """The caller's job, or 404 (unknown, cancelled, expired - which is then purged - or someone else's)."""
    if not job_id or not is_job_id(job_id):
        raise NotFound("No such export job (missing or malformed _jobId)")
    store = ExportJobs(services.store)
    job = await store.get_for(ctx, job_id)
    if job is None:
        raise NotFound(f"No export job {job_id} (unknown, cancelled or expired)")
    if job.status != IN_PROGRESS and job.expires <= now_ms():
        await purge(services, job.id)
        raise NotFound(f"Export job {job_id} has expired")
    return job


async def cancel(services: Services, job: ExportJob) -> OperationResponse:
    """export.html#bulk-data-delete-request: 202; the job document goes, so every later poll is a 404 and the
    running task (here or in another process) stops at its next heartbeat."""
    await purge(services, job.id)
    runner.cancel_here(job.id)
    metrics.export_job("cancelled")
    outcome = operation_outcome([Issue("information", "informational", f"Export {job.id} cancelled and deleted")])
    return OperationResponse(202, outcome)


def manifest(ctx: RequestContext, job: ExportJob, requires_token: bool = False) -> dict[str, Any]:
    """The complete-status body (export.html#response---complete-status); with tokens (``FHIR_AUTH_MODE=smart``)
    the files are fetched with the same bearer token as the export."""
    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": requires_token,
        "output": [{"type": f.type, "url": file_url(ctx, job.id, f.name), "count": f.count} for f in job.output],
        "error": [],
    }


async def purge(services: Services, job_id: str) -> None:
    """The job document first: no process serves a file of a job that is gone, or writes to it."""
    await ExportJobs(services.store).remove(job_id)
    await remove_job_files(services.store.files(), job_id)


async def purge_expired(services: Services) -> None:
    """Housekeeping at each kick-off and sweep: expired jobs lose their document and their files."""
    for job_id in await ExportJobs(services.store).expired(now_ms()):
        await purge(services, job_id)


# -- takeover --------------------------------------------------------------------------------------------------


async def resume_if_stale(services: Services, job: ExportJob) -> ExportJob:
    """A running job whose process died (its heartbeat stopped): taken over and resumed here after its last
    finished type, or failed once it ran ``FHIR_EXPORT_MAX_ATTEMPTS`` times. Any other job is returned as is."""
    store = ExportJobs(services.store)
    taken = await store.take_over_if_stale(job, services.settings.export_max_attempts)
    if taken is None:
        return await store.fail_if_stale(job) or job
    log.warning("bulk export %s: its process (%s) stopped; resuming it here (run %d of at most %d), after %d of "
                "%d types", job.id, job.owner, taken.attempts, services.settings.export_max_attempts,
                taken.types_done, len(taken.types))
    await remove_job_files(services.store.files(), taken.id, keep=taken.output)  # half-written ones
    metrics.export_job("taken-over")
    runner.start(services, taken)
    return taken


async def sweep(services: Services) -> None:
    """What every process does now and then (``FHIR_JOB_SWEEP_SECONDS``), so that no export waits for a poll:
    resume the exports whose process died, delete the expired ones."""
    store = ExportJobs(services.store)
    for job_id in await store.stale():
        job = await store.get(job_id)
        if job is not None:
            await resume_if_stale(services, job)
    await purge_expired(services)
