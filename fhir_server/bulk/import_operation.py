"""``$import`` and ``$import-poll-status``: Bulk Data Import, ping and pull
(https://github.com/smart-on-fhir/bulk-import/blob/master/import-pnp.md; the manifest's per-input counts follow
https://github.com/smart-on-fhir/bulk-import/blob/master/import.md).

* kick-off: ``POST [base]/$import`` with a Parameters resource: ``input`` (repeated) with parts ``url`` (an
  NDJSON file: http(s), or a file under ``FHIR_IMPORT_DIR``, plain or gzip) and optionally ``type``;
  ``inputFormat`` if given must be ``application/fhir+ndjson``. Every input is checked before anything is
  read (400 for a path outside the directory). ``202 Accepted`` with ``Content-Location:
  [base]/$import-poll-status?_jobId=<id>``.
* status: ``202`` with ``X-Progress`` (lines read, stored, failed) and ``Retry-After`` while running; ``200`` with
  the manifest when done: ``transactionTime``, ``request``, ``requiresAccessToken``, ``output`` (one entry per
  input: ``inputUrl``, ``count`` of resources stored), ``error`` (one entry per input with failed lines: an
  NDJSON of OperationOutcomes, one per failed line, whose ``issue`` carries the error and whose ``extension``
  names the input and its line number); ``500`` with an OperationOutcome when the job failed; DELETE cancels.
* the job runs in the background in batches (``bulk/loader.py``: each resource validated and written as a create
  or update of its own, the storage batched). Admin only (``interactions/authorization.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server import fhirjson
from fhir_server.bulk import import_sources
from fhir_server.bulk.import_jobs import ImportInput, ImportJob, ImportJobs, new_job_id
from fhir_server.bulk.loader import BATCH_SIZE, LoadItem, LoadResult, load_batch, prepare
from fhir_server.bulk.ndjson import is_job_id
from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.services import Services
from fhir_server.storage.documents import instant, now_ms
from fhir_server.storage.jobs import FAILED, IN_PROGRESS

NDJSON = "application/fhir+ndjson"
RETRY_AFTER_SECONDS = 2
HEARTBEAT_SECONDS = 5.0
LINE_EXTENSION = "https://cml-registry.eu/fhir/StructureDefinition/import-line"
log = logging.getLogger(__name__)
_RUNNING: dict[str, asyncio.Task[None]] = {}


def register(registry: OperationRegistry) -> None:
    if registry.known("import"):
        return
    registry.register(OperationSpec(
        "import", kickoff, frozenset({"system"}), methods=frozenset({"POST"}),
        documentation="Bulk Data Import (ping and pull): load NDJSON files named by URL; admin only"))
    registry.register(OperationSpec(
        "import-poll-status", poll_status, frozenset({"system"}), methods=frozenset({"GET", "DELETE"}),
        documentation="Status (GET) or cancellation (DELETE) of a bulk import; see Content-Location"))


# -- kick-off ------------------------------------------------------------------------------------------------


def parse_inputs(op: OperationRequest, services: Services) -> list[ImportInput]:
    """The ``input`` parameters of the kick-off, each checked (400 otherwise)."""
    fmt = op.param("inputFormat")
    if fmt is not None and fmt != NDJSON:
        raise InvalidRequest(f"inputFormat {fmt} is not supported (only {NDJSON})", code="not-supported",
                             expression=("inputFormat",))
    inputs: list[ImportInput] = []
    for parameter in op.parameters():
        if parameter.get("name") != "input":
            continue
        parts = {p.get("name"): p for p in parameter.get("part") or [] if isinstance(p, dict)}
        url = _part_value(parts.get("url"))
        if not url:
            raise InvalidRequest("Each input needs a url part", code="required", expression=("input.url",))
        import_sources.check_input(url, services.settings.import_dir)
        inputs.append(ImportInput(url=url, type=_part_value(parts.get("type"))))
    if not inputs:
        raise InvalidRequest("A Parameters resource with at least one input (its url) is required",
                             code="required", expression=("input",))
    return inputs


def _part_value(part: dict[str, Any] | None) -> str | None:
    if part is None:
        return None
    for key, value in part.items():
        if key.startswith("value") and isinstance(value, str):
            return value
    return None


async def kickoff(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    inputs = parse_inputs(op, services)
    store = ImportJobs(services.store)
    for expired in await store.expired(now_ms()):  # housekeeping: finished jobs past their expiry, and their files
        await purge(services, expired)
    now = now_ms()
    job = ImportJob(id=new_job_id(), request=ctx.url("$import"), transaction_time=now,
                    expires=now + timedelta(seconds=services.settings.export_ttl_seconds), base_url=ctx.base_url,
                    caller=ctx.caller, scopes=sorted(ctx.scopes), center=ctx.center, role=ctx.role.value,
                    inputs=inputs)
    await store.insert(job)
    start(services, job)
    outcome = operation_outcome([Issue("information", "informational",
                                       f"Import {job.id} accepted; poll the Content-Location")])
    return OperationResponse(202, outcome, headers={"Content-Location": status_url(ctx, job.id)})


def status_url(ctx: RequestContext, job_id: str) -> str:
    return ctx.url("$import-poll-status") + "?" + urlencode({"_jobId": job_id})


def error_file_url(ctx: RequestContext, job_id: str, name: str) -> str:
    return ctx.url("_import", job_id, "files", name)


# -- status ----------------------------------------------------------------------------------------------------


async def visible_job(ctx: RequestContext, services: Services, job_id: str | None) -> ImportJob:
    if not job_id or not is_job_id(job_id):
        raise NotFound("No such import job (missing or malformed _jobId)")
    job = await ImportJobs(services.store).get(job_id)
    if job is None or job.caller != ctx.caller:
        raise NotFound(f"No import job {job_id} (unknown, cancelled or expired)")
    if job.status != IN_PROGRESS and job.expires <= now_ms():
        await purge(services, job.id)
        raise NotFound(f"Import job {job_id} has expired")
    return job


async def poll_status(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    job = await visible_job(ctx, services, op.param("_jobId"))
    if op.method == "DELETE":
        await purge(services, job.id)
        task = _RUNNING.get(job.id)
        if task is not None:
            task.cancel()
        return OperationResponse(202, operation_outcome([Issue("information", "informational",
                                                               f"Import {job.id} cancelled")]))
    if job.status == IN_PROGRESS:
        job = await _resume_if_stale(services, job)
    if job.status == IN_PROGRESS:
        return OperationResponse(202, None, headers={"X-Progress": job.progress[:100],
                                                     "Retry-After": str(RETRY_AFTER_SECONDS)})
    if job.status == FAILED:
        return OperationResponse(500, operation_outcome([Issue("error", "exception", job.message or "failed")]))
    return OperationResponse(200, fhirjson.dumps(manifest(ctx, job, services.settings.auth_mode == "smart")),
                             media_type="application/json",
                             headers={"Expires": format_datetime(job.expires.astimezone(UTC), usegmt=True)})


def manifest(ctx: RequestContext, job: ImportJob, requires_token: bool) -> dict[str, Any]:
    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": requires_token,
        "output": [{"type": "OperationOutcome", "inputUrl": i.url, "count": i.count} for i in job.inputs],
        "error": [{"type": "OperationOutcome", "inputUrl": i.url, "count": i.errors,
                   "url": error_file_url(ctx, job.id, i.error_file)} for i in job.inputs if i.error_file],
    }


async def purge(services: Services, job_id: str) -> None:
    await ImportJobs(services.store).remove(job_id)
    await services.store.files().remove_owned(f"import-{job_id}")


async def _resume_if_stale(services: Services, job: ImportJob) -> ImportJob:
    store = ImportJobs(services.store)
    taken = await store.take_over_if_stale(job, services.settings.export_max_attempts)
    if taken is None:
        return await store.fail_if_stale(job) or job
    log.warning("bulk import %s: its process (%s) stopped; resuming here at input %d", job.id, job.owner,
                taken.inputs_done + 1)
    start(services, taken)
    return taken


# -- the job ---------------------------------------------------------------------------------------------------


def error_file_id(job_id: str, name: str) -> str:
    """The GridFS id of an error file (one per input: a resumed input first removes what its dead run wrote)."""
    return f"import-{job_id}/{name}"


def error_line(url: str, result: LoadResult) -> bytes:
    """One line of an error file: the OperationOutcome of the failed line, naming the input and the line."""
    outcome = operation_outcome(result.issues)
    outcome["extension"] = [{"url": LINE_EXTENSION, "extension": [
        {"url": "input", "valueUrl": url}, {"url": "line", "valueInteger": result.line}]}]
    return fhirjson.dumps(outcome) + b"\n"


def parse_line(line: bytes, services: Services) -> Any:
    """The resource of one NDJSON line (the server's JSON rules: exact decimals, limits); its error otherwise."""
    return fhirjson.loads(line, limits=services.settings.json_limits)


def start(services: Services, job: ImportJob) -> None:
    task = asyncio.create_task(run(services, job), name=f"bulk-import-{job.id}-{job.attempts}")
    _RUNNING[job.id] = task
    task.add_done_callback(lambda done: _RUNNING.pop(job.id, None) if _RUNNING.get(job.id) is done else None)


async def wait(job_id: str) -> None:
    """Wait for this process's task of ``job_id`` (tests and the benchmark)."""
    task = _RUNNING.get(job_id)
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


class Cancelled(Exception):
    """The job was cancelled or taken over."""


async def run(services: Services, job: ImportJob) -> None:
    store = ImportJobs(services.store)
    try:
        for index in range(job.inputs_done, len(job.inputs)):
            await _load_input(services, store, job, job.inputs[index])
            job.inputs_done = index + 1
            if not await store.input_done(job):
                raise Cancelled(job.id)
        await store.complete(job, services.settings.export_ttl_seconds)
    except (Cancelled, asyncio.CancelledError):
        log.info("bulk import %s stopped (cancelled or taken over)", job.id)
    except Exception as exc:  # a file that cannot be read, a database gone for longer than the budget
        log.exception("bulk import %s failed", job.id)
        await store.fail(job, f"The import stopped at input {job.inputs_done + 1}: {exc}")


@dataclass
class _Batch:
    """The lines of one batch: the resources to load (type and structure already checked) and the lines that are
    no resource (their errors), in the order they were read."""

    items: list[LoadItem] = field(default_factory=list)
    unreadable: list[LoadResult] = field(default_factory=list)
    last: bool = False


async def _batches(services: Services, source: ImportInput) -> AsyncGenerator[_Batch, None]:
    """The input's lines, parsed and checked (``loader.prepare``) in batches of ``BATCH_SIZE``; the last one may
    be smaller or empty. Reads and computes, writes nothing: :func:`_load_input` prepares the next batch with it
    while the current one is stored, and may drop it half-way (a cancelled job). The event loop gets a turn
    after each line, so the batch being stored goes on as soon as MongoDB answers."""
    batch = _Batch()
    async for number, line in import_sources.lines(source.url, services.settings.import_dir):
        try:
            item = LoadItem(number, _typed(parse_line(line, services), source.type))
        except FhirError as exc:
            batch.unreadable.append(LoadResult(number, issues=list(exc.issues)))
        else:
            prepare(item)
            batch.items.append(item)
        await asyncio.sleep(0)
        if len(batch.items) >= BATCH_SIZE:
            yield batch
            batch = _Batch()
    batch.last = True
    yield batch


async def _next(batches: AsyncGenerator[_Batch, None]) -> _Batch:
    return await anext(batches)


async def _load_input(services: Services, store: ImportJobs, job: ImportJob, source: ImportInput) -> None:
    """Load one input, batch after batch. The next batch is read, parsed and structure-checked by a task of its
    own while the current one is stored (the server's CPU and MongoDB's work overlap); nothing of it that needs
    the database starts before the current batch has committed, and its lines are reported after the current
    batch's, as if read after it."""
    ctx = job.context()
    source.count = source.errors = 0
    name = f"errors-{job.inputs.index(source) + 1}.ndjson"
    files = services.store.files()
    await files.remove([error_file_id(job.id, name)])
    writer = files.writer(error_file_id(job.id, name))
    batches = _batches(services, source)
    upcoming: asyncio.Task[_Batch] | None = None
    try:
        async with writer:
            last_beat = asyncio.get_running_loop().time()
            batch = await anext(batches)
            while True:
                if not batch.last:  # read and check the next batch while this one is stored
                    upcoming = asyncio.create_task(_next(batches))
                for result in batch.unreadable:
                    await _report(writer, source, result)
                await _flush(ctx, services, source, batch.items, writer)
                if upcoming is None:
                    break
                if asyncio.get_running_loop().time() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = asyncio.get_running_loop().time()
                    if not await store.beat(job, f"input {job.inputs.index(source) + 1} of {len(job.inputs)}: "
                                                 f"{source.count} stored, {source.errors} failed"):
                        raise Cancelled(job.id)
                batch, upcoming = await upcoming, None
    finally:
        if upcoming is not None:  # stopped early (cancelled, the database gone): drop what was read ahead
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)
        await batches.aclose()
    if source.errors:
        source.error_file = name
    else:
        await files.remove([error_file_id(job.id, name)])


def _typed(resource: Any, expected: str | None) -> Any:
    """A line of a file declared as one type must be that type."""
    if expected and isinstance(resource, dict) and resource.get("resourceType") != expected:
        raise InvalidRequest(f"A {resource.get('resourceType')} in an input of type {expected}", code="invalid",
                             expression=("resourceType",))
    return resource


async def _report(writer: Any, source: ImportInput, result: LoadResult) -> None:
    source.errors += 1
    await writer.write(error_line(source.url, result))


async def _flush(ctx: RequestContext, services: Services, source: ImportInput, batch: list[LoadItem],
                 writer: Any) -> None:
    for result in await load_batch(ctx, services, batch):
        if result.failed:
            await _report(writer, source, result)
        else:
            source.count += 1
