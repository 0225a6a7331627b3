"""Bulk export output files (Bulk Data Access IG 2.0, export.html#file-request).

``GET [base]/_export/<job>/files/<Type>-<n>.ndjson`` streams the file from MongoDB GridFS one chunk at a time
(constant memory) as ``application/fhir+ndjson``, whichever server node wrote it. Four path segments after
``/fhir``, so no route of the main FHIR router (``/{type}/{id}/{compartment}``, ``/{type}/{id}/_history/{vid}``)
can shadow it, whatever the inclusion order. Only the caller that started the export gets its files; unknown,
cancelled or expired jobs are 404. Each download leaves an AuditEvent (README, "Audit trail": subtype
``operation``, action R, the file's URL as its query).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fhir_server.api.context import request_context
from fhir_server.bulk.import_operation import error_file_id
from fhir_server.bulk.import_operation import visible_job as import_visible_job
from fhir_server.bulk.jobs import COMPLETED
from fhir_server.bulk.ndjson import file_id, is_file_name
from fhir_server.bulk.operation import visible_job
from fhir_server.bulk.params import NDJSON
from fhir_server.context import RequestContext
from fhir_server.errors import NotFound
from fhir_server.interactions import audit_event
from fhir_server.services import Services

router = APIRouter(prefix="/fhir")


@router.get("/_export/{job_id}/files/{file_name}")
async def export_file(request: Request, job_id: str, file_name: str) -> Response:
    services: Services = request.app.state.services
    ctx = await request_context(request, services.settings)
    asked = audit_event.Asked("GET", f"_export/{job_id}/files/{file_name}", "operation", "R", query=True)
    try:
        response = await _file(ctx, services, job_id, file_name)
    except Exception as exc:
        audit_event.record_failure(ctx, services, asked, exc)
        raise
    audit_event.queue(services, ctx, asked, 200, [audit_event.query_entity(asked.url)])
    return response


async def _file(ctx: RequestContext, services: Services, job_id: str, file_name: str) -> Response:
    job = await visible_job(ctx, services, job_id)
    output = next((f for f in job.output if f.name == file_name), None)
    if job.status != COMPLETED or not is_file_name(file_name) or output is None:
        raise NotFound(f"Export {job_id} has no file {file_name}")
    stored = await services.store.files().open(file_id(job.id, output))
    if stored is None:
        raise NotFound(f"The file {file_name} of export {job_id} is gone")
    return StreamingResponse(stored.chunks(), media_type=NDJSON, headers={"Content-Length": str(stored.length)})


@router.get("/_import/{job_id}/files/{file_name}")
async def import_error_file(request: Request, job_id: str, file_name: str) -> Response:
    """The error NDJSON of one input of a finished ``$import`` (bulk/import_operation.py), to its caller."""
    services: Services = request.app.state.services
    ctx = await request_context(request, services.settings)
    job = await import_visible_job(ctx, services, job_id)
    source = next((i for i in job.inputs if i.error_file == file_name), None)
    if job.status != COMPLETED or source is None:
        raise NotFound(f"Import {job_id} has no file {file_name}")
    stored = await services.store.files().open(error_file_id(job.id, file_name))
    if stored is None:
        raise NotFound(f"The file {file_name} of import {job_id} is gone")
    return StreamingResponse(stored.chunks(), media_type=NDJSON, headers={"Content-Length": str(stored.length)})
