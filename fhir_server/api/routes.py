"""The FHIR RESTful API (https://hl7.org/fhir/R4/http.html) mapped onto the interactions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.context import prefer, request_context
from fhir_server.api.negotiation import fhir_response, read_body, read_raw_body, response_media_type
from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, MethodNotAllowed, NotFound
from fhir_server.interactions import bundle as bundle_interaction
from fhir_server.interactions import capabilities
from fhir_server.interactions import history as history_interaction
from fhir_server.interactions import read as read_interaction
from fhir_server.interactions import search as search_interaction
from fhir_server.interactions.create import create
from fhir_server.interactions.dates import parse_http_date
from fhir_server.interactions.delete import conditional_delete, delete
from fhir_server.interactions.patch import parse_patch, patch
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork, run_in_transaction
from fhir_server.interactions.update import conditional_update, update
from fhir_server.operations import OperationRequest
from fhir_server.resources import check_structure, require_supported_type
from fhir_server.services import Services

router = APIRouter(prefix="/fhir")


def _services(request: Request) -> Services:
    return request.app.state.services


def _setup(request: Request) -> tuple[RequestContext, Services]:
    services = _services(request)
    response_media_type(request)  # 406 early, before any work
    return request_context(request, services.settings), services


def _pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"


def _params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items()]


def _write_response(request: Request, ctx: RequestContext, result: InteractionResult) -> Response:
    """Body chosen by ``Prefer: return=`` (https://hl7.org/fhir/R4/http.html#ops)."""
    headers = result.headers(ctx, with_location=result.status in (200, 201) and result.version is not None)
    wanted = prefer(request).get("return", "representation")
    if result.status == 204 and wanted != "OperationOutcome":
        return Response(status_code=204, headers=headers)
    if wanted == "minimal":
        return Response(status_code=result.status, headers=headers)
    if wanted == "OperationOutcome":
        return fhir_response(result.outcome_or_note(request.method), result.status if result.status != 204 else 200,
                             headers, pretty=_pretty(request))
    return fhir_response(result.resource, result.status, headers, pretty=_pretty(request))


async def _write(request: Request, ctx: RequestContext, services: Services,
                 work: Callable[[UnitOfWork], Awaitable[InteractionResult]]) -> Response:
    """Run a write interaction in its own transaction, apply what its commit changes, answer per Prefer."""
    result = await run_in_transaction(ctx, services, work)
    await services.after_commit(result)
    return _write_response(request, ctx, result)


def _read_response(request: Request, ctx: RequestContext, result: InteractionResult) -> Response:
    return fhir_response(result.resource, 200, result.headers(ctx, with_location=False), pretty=_pretty(request))


# -- whole system ------------------------------------------------------------------------------------------


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    ctx, services = _setup(request)
    return fhir_response(capabilities.capability_statement(ctx, services), pretty=_pretty(request))


@router.post("")
@router.post("/")
async def system_bundle(request: Request) -> Response:
    ctx, services = _setup(request)
    body = await read_body(request, services.settings)
    result = await bundle_interaction.process_bundle(ctx, services, body,
                                                     prefer_return=prefer(request).get("return"))
    return fhir_response(result, 200, pretty=_pretty(request))


@router.get("")
@router.get("/")
async def system_search(request: Request) -> Response:
    ctx, services = _setup(request)
    bundle = await search_interaction.search(ctx, services, None, _params(request))
    return fhir_response(bundle, pretty=_pretty(request))


@router.get("/_history")
async def system_history(request: Request) -> Response:
    ctx, services = _setup(request)
    bundle = await history_interaction.history(ctx, services, None, None, _params(request))
    return fhir_response(bundle, pretty=_pretty(request))


# -- operations ($name) at every level, dispatched through the OperationRegistry ---------------------------


async def _operation(request: Request, name: str, level: str, resource_type: str | None,
                     resource_id: str | None) -> Response:
    services = _services(request)
    if resource_type is not None:
        require_supported_type(resource_type)
    spec = services.operations.find(name, level, resource_type, request.method)
    if spec is None:
        where = f"{resource_type or 'system'} {level} level"
        if services.operations.known(name):
            raise MethodNotAllowed(f"${name} is not available with {request.method} at {where}")
        raise NotFound(f"Unknown operation ${name}", code="not-supported")
    body = None
    if request.method == "POST":
        raw_ct = request.headers.get("content-type") or ""
        if raw_ct or request.headers.get("content-length", "0") != "0":
            body = await read_body(request, services.settings)
    ctx = request_context(request, services.settings)
    op = OperationRequest(name, level, resource_type, resource_id, request.method, _params(request), body,
                          {k.lower(): v for k, v in request.headers.items()})
    out = await spec.handler(ctx, services, op)
    if isinstance(out.body, (bytes, str)) or out.body is None:
        return Response(out.body, status_code=out.status, headers=out.headers,
                        media_type=out.media_type if out.body is not None else None)
    return fhir_response(out.body, out.status, out.headers, pretty=_pretty(request))


@router.api_route("/${name}", methods=["GET", "POST", "DELETE"])
async def system_operation(request: Request, name: str) -> Response:
    return await _operation(request, name, "system", None, None)


@router.api_route("/{resource_type}/${name}", methods=["GET", "POST"])
async def type_operation(request: Request, resource_type: str, name: str) -> Response:
    return await _operation(request, name, "type", resource_type, None)


@router.api_route("/{resource_type}/{resource_id}/${name}", methods=["GET", "POST"])
async def instance_operation(request: Request, resource_type: str, resource_id: str, name: str) -> Response:
    return await _operation(request, name, "instance", resource_type, resource_id)


# -- type level --------------------------------------------------------------------------------------------


@router.get("/{resource_type}")
async def search_type(request: Request, resource_type: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    bundle = await search_interaction.search(ctx, services, resource_type, _params(request))
    return fhir_response(bundle, pretty=_pretty(request))


@router.post("/_search")
async def system_search_post(request: Request) -> Response:
    return await _search_post(request, None)


@router.post("/{resource_type}/_search")
async def search_type_post(request: Request, resource_type: str) -> Response:
    require_supported_type(resource_type)
    return await _search_post(request, resource_type)


async def _search_post(request: Request, resource_type: str | None) -> Response:
    ctx, services = _setup(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("POST _search takes an application/x-www-form-urlencoded body", code="invalid")
    raw = await read_raw_body(request, services.settings.max_body_bytes)
    try:
        form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidRequest("The _search body is not UTF-8", code="structure") from exc
    params = _params(request) + form
    bundle = await search_interaction.search(ctx, services, resource_type, params)
    return fhir_response(bundle, pretty=_pretty(request))


@router.post("/{resource_type}")
async def create_resource(request: Request, resource_type: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    body = await read_body(request, services.settings)
    check_structure(body, resource_type)
    if_none_exist = request.headers.get("if-none-exist")
    return await _write(request, ctx, services, lambda uow: create(uow, body, if_none_exist=if_none_exist))


@router.put("/{resource_type}")
async def conditional_update_resource(request: Request, resource_type: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    criteria = request.url.query
    if not criteria:
        raise MethodNotAllowed("PUT on a type needs search criteria (conditional update) or an id")
    body = await read_body(request, services.settings)
    check_structure(body, resource_type)
    if_match, if_none_match = request.headers.get("if-match"), request.headers.get("if-none-match")
    return await _write(request, ctx, services, lambda uow: conditional_update(
        uow, body, criteria, if_match=if_match, if_none_match=if_none_match))


@router.delete("/{resource_type}")
async def conditional_delete_resource(request: Request, resource_type: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    criteria = request.url.query
    if not criteria:
        raise MethodNotAllowed("DELETE on a type needs search criteria (conditional delete) or an id")
    return await _write(request, ctx, services, lambda uow: conditional_delete(uow, resource_type, criteria))


@router.get("/{resource_type}/_history")
async def type_history(request: Request, resource_type: str) -> Response:
    ctx, services = _setup(request)
    bundle = await history_interaction.history(ctx, services, resource_type, None, _params(request))
    return fhir_response(bundle, pretty=_pretty(request))


# -- instance level ----------------------------------------------------------------------------------------


@router.get("/{resource_type}/{resource_id}")
async def read_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx, services = _setup(request)
    since = request.headers.get("if-modified-since")
    result = await read_interaction.read(
        ctx, services, resource_type, resource_id, if_none_match=request.headers.get("if-none-match"),
        if_modified_since=parse_http_date(since) if since else None)
    return _read_response(request, ctx, result)


@router.put("/{resource_type}/{resource_id}")
async def update_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    body = await read_body(request, services.settings)
    if isinstance(body, dict) and "id" not in body:
        raise InvalidRequest("The resource must carry the id of the URL", code="required",
                             expression=(f"{resource_type}.id",))
    check_structure(body, resource_type, resource_id)
    if_match, if_none_match = request.headers.get("if-match"), request.headers.get("if-none-match")
    return await _write(request, ctx, services, lambda uow: update(
        uow, body, resource_id, if_match=if_match, if_none_match=if_none_match))


@router.patch("/{resource_type}/{resource_id}")
async def patch_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    operations = parse_patch(await read_body(request, services.settings, patch=True))
    if_match = request.headers.get("if-match")
    return await _write(request, ctx, services,
                        lambda uow: patch(uow, resource_type, resource_id, operations, if_match=if_match))


@router.delete("/{resource_type}/{resource_id}")
async def delete_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx, services = _setup(request)
    require_supported_type(resource_type)
    return await _write(request, ctx, services, lambda uow: delete(uow, resource_type, resource_id))


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx, services = _setup(request)
    bundle = await history_interaction.history(ctx, services, resource_type, resource_id, _params(request))
    return fhir_response(bundle, pretty=_pretty(request))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread_resource(request: Request, resource_type: str, resource_id: str, version_id: str) -> Response:
    ctx, services = _setup(request)
    result = await read_interaction.vread(ctx, services, resource_type, resource_id, version_id)
    return _read_response(request, ctx, result)


@router.get("/{resource_type}/{resource_id}/{compartment_type}")
async def compartment_search(request: Request, resource_type: str, resource_id: str,
                             compartment_type: str) -> Response:
    ctx, services = _setup(request)
    if resource_type != "Patient":
        raise NotFound(f"{resource_type} is not a compartment this server supports", code="not-supported")
    require_supported_type(compartment_type)
    bundle = await search_interaction.search(ctx, services, compartment_type, _params(request),
                                             compartment=(resource_type, resource_id))
    return fhir_response(bundle, pretty=_pretty(request))
