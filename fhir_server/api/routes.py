"""The FHIR RESTful API (https://hl7.org/fhir/R4/http.html) over HTTP: one route for every URL under ``/fhir``.

An HTTP request becomes a ``FhirRequest`` through the one request parser (``interactions.request``, the same
that reads Bundle entries), runs through ``interactions.dispatch`` (authorization, then the interaction) and is
rendered here by one function: status, ETag/Last-Modified/Location, and the body ``Prefer: return`` asks for.
FastAPI does no routing of its own below ``/fhir``: this catch-all router is included last, so a specific route
of another router (bulk export files, SMART's ``/.well-known``) registered before it wins for its own path and
method; any other method or path on those is then the catch-all's, parsed like any FHIR URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from fhir_server.api.context import base_url, request_context
from fhir_server.api.negotiation import (
    fhir_response,
    negotiated_media_type,
    read_binary_body,
    read_body,
    read_raw_body,
    response_media_type,
    wants_native_binary,
)
from fhir_server.api.observability import INTERACTION_KEY
from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, MethodNotAllowed, NotFound, UnsupportedMediaType
from fhir_server.interactions import audit_event
from fhir_server.interactions.binary import (
    BINARY,
    is_binary_resource,
    native_binary,
    native_content,
    security_context_of,
)
from fhir_server.interactions.dispatch import AfterResponse, dispatch
from fhir_server.interactions.request import OPERATIONS, FhirRequest, Interaction, parse_request
from fhir_server.interactions.result import InteractionResult
from fhir_server.operations import OperationResponse
from fhir_server.services import Services
from fhir_server.settings import Settings

router = APIRouter(prefix="/fhir")

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]  # the parser answers 405 for OPTIONS
_WITH_BODY = ("POST", "PUT", "PATCH")
_READS = (Interaction.READ, Interaction.VREAD)
_DISCOVERY = ("metadata", "$versions")  # answered to anyone


async def fhir_api(request: Request) -> Response:
    path: str = request.path_params.get("path", "")
    if path.endswith("/"):  # one spelling per URL, as FastAPI redirects a trailing slash ([base]/ is the base)
        return RedirectResponse(request.url.replace(path=request.scope["path"].rstrip("/")), status_code=307)
    services: Services = request.app.state.services
    body = HttpBody(request, services.settings) if request.method in _WITH_BODY else None
    query = request.scope["query_string"].decode("latin-1")

    def negotiate(kind: Interaction, resource_type: str | None) -> None:
        """406 before any work. An operation negotiates its own output; a read of a Binary may answer its
        content in its own media type, known once it is read (``render``)."""
        if kind not in OPERATIONS and not (resource_type == BINARY and kind in _READS):
            response_media_type(request)

    ctx: RequestContext | None = None
    try:
        # Who calls is known before anything is parsed or read (an unauthenticated body costs nothing); the
        # CapabilityStatement and $versions need no token (SMART: clients discover the server from them)
        ctx = await request_context(request, services.settings,
                                    public=request.method in ("GET", "HEAD") and path in _DISCOVERY)
        fhir_request = await _parse(request, path, query, body, negotiate)
        request.scope[INTERACTION_KEY] = fhir_request.interaction.value  # the metrics' label (api.observability)
        after_response: AfterResponse = []
        result = await dispatch(ctx, services, fhir_request, after_response=after_response)
        response = render(ctx, fhir_request, result, request)  # a HEAD's too: api.head drops its content
        if after_response:  # a read's AuditEvent, built once the client has its answer (run after the body is sent)
            response.background = BackgroundTask(_run_each, after_response)
        return response
    except Exception as exc:  # refused before dispatch (no identity 401, unknown URL, 405, 406, 413, 415): audited too
        audit_event.record_failure(ctx, services, audit_event.Asked.raw(request.method, path, query), exc,
                                   base_url=base_url(request, services.settings))
        raise


# Plain Starlette routes: the endpoint takes the request alone, so FastAPI's per-request dependency solving (a
# sub-response, parameter models) is not needed; routing, the error handlers and the middleware are the same.
for _path in ("", "/{path:path}"):
    router.add_route(router.prefix + _path, fhir_api, methods=_METHODS)  # the prefix is not applied to these


async def _run_each(work: AfterResponse) -> None:
    """Run in the event loop's thread (a plain function would go to Starlette's thread pool: the audit queue is the
    loop's)."""
    for step in work:
        step()


async def _parse(request: Request, path: str, query: str, body: HttpBody | None,
                 negotiate: Callable[[Interaction, str | None], None]) -> FhirRequest:
    try:
        return await parse_request(request.method, path, query, request.headers, body, routed=negotiate)
    except NotFound as exc:
        if _served_by_another_route(request):
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}") from exc
        raise


def _served_by_another_route(request: Request) -> bool:
    """Whether a route of another router (bulk files, SMART) serves this path with other methods: a 405 then,
    as FastAPI would answer without the catch-all."""
    return any(getattr(route, "endpoint", None) is not fhir_api and route.matches(request.scope)[0] is Match.PARTIAL
               for route in request.app.router.routes)


def render(ctx: RequestContext, request: FhirRequest, result: InteractionResult | OperationResponse,
           http_request: Request) -> Response:
    """The HTTP response of any interaction's result."""
    if isinstance(result, OperationResponse):
        return _operation_response(request, result, negotiated_media_type(http_request))
    if request.is_write:
        return _write_response(ctx, request, result, negotiated_media_type(http_request))
    headers = result.headers(ctx, with_location=False)
    if result.status == 304:  # conditional read: the client's copy is current
        return Response(status_code=304, headers=headers)
    if request.resource_type == BINARY and request.interaction in _READS and result.resource is not None:
        if wants_native_binary(http_request, str(result.resource.get("contentType", ""))):
            return _native_binary(result.resource, headers)
        response_media_type(http_request)  # the resource, then: in a media type this server speaks (or 406)
    return fhir_response(result.resource, result.status, headers, pretty=request.pretty,
                         media_type=negotiated_media_type(http_request))


def _native_binary(resource: dict[str, Any], headers: dict[str, str]) -> Response:
    """A Binary's content in its own media type, its metadata in headers (binary.html#rest). The content is
    the client's, of any media type, served from the FHIR server's origin: a browser must neither run it
    (a sandbox without scripts) nor guess another type for it."""
    content, media_type = native_content(resource)
    headers = {**headers, "Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
    context = security_context_of(resource)
    if context:
        headers["X-Security-Context"] = context
    return Response(content, status_code=200, headers=headers, media_type=media_type)


def _write_response(ctx: RequestContext, request: FhirRequest, result: InteractionResult,
                    media_type: str) -> Response:
    """Body chosen by ``Prefer: return=`` (https://hl7.org/fhir/R4/http.html#ops), the stored resource unless
    asked otherwise."""
    headers = result.headers(ctx, with_location=result.status in (200, 201) and result.version is not None)
    wanted = request.prefer_return or "representation"
    if result.status == 204 and wanted != "OperationOutcome":
        return Response(status_code=204, headers=headers)
    if wanted == "minimal":
        return Response(status_code=result.status, headers=headers)
    if wanted == "OperationOutcome":
        return fhir_response(result.outcome_or_note(request.method), result.status if result.status != 204 else 200,
                             headers, pretty=request.pretty, media_type=media_type)
    if "Location" in headers and result.resource is not None:  # the body is that version (RFC 9110 8.7)
        headers["Content-Location"] = headers["Location"]
    return fhir_response(result.resource, result.status, headers, pretty=request.pretty, media_type=media_type)


def _operation_response(request: FhirRequest, out: OperationResponse, media_type: str) -> Response:
    if isinstance(out.body, (bytes, str)) or out.body is None:
        return Response(out.body, status_code=out.status, headers=out.headers,
                        media_type=out.media_type if out.body is not None else None)
    return fhir_response(out.body, out.status, out.headers, pretty=request.pretty, media_type=media_type)


class HttpBody:
    """The body of an HTTP request, read as the interaction needs it (``interactions.request.RequestBody``):
    media type (415), size (413) and hostile JSON (400, ``FHIR_MAX_JSON_*``) checked here, JSON parsed with
    exact decimals."""

    __slots__ = ("_request", "_settings")

    def __init__(self, request: Request, settings: Settings) -> None:
        self._request = request
        self._settings = settings

    async def resource(self) -> object:
        return await read_body(self._request, self._settings)

    async def binary(self, resource_id: str | None) -> object:
        """binary.html#rest: a Binary resource in FHIR JSON as sent; any other content (another resource's
        JSON too) as the data of a Binary the server makes, ``X-Security-Context`` its security context."""
        parsed, raw, content_type = await read_binary_body(self._request, self._settings)
        if is_binary_resource(parsed):
            return parsed
        return native_binary(raw, content_type, self._request.headers.get("x-security-context"), resource_id)

    async def patch_document(self) -> object:
        return await read_body(self._request, self._settings, patch=True)

    async def form(self) -> list[tuple[str, str]]:
        """The parameters of a POST ``_search`` body (http.html#search). A POST with no body at all is a search
        by the URL's parameters alone, as clients send it; a body of any other media type is a 415."""
        content_type = (self._request.headers.get("content-type") or "").split(";")[0].strip().lower()
        raw = await read_raw_body(self._request, self._settings.max_body_bytes)
        if not raw and not content_type:
            return []
        if content_type != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType(
                f"POST _search takes an application/x-www-form-urlencoded body, not '{content_type or 'none'}'")
        try:
            return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise InvalidRequest("The _search body is not UTF-8", code="structure") from exc

    async def optional_resource(self) -> object:
        """An operation's input, or None for no body: none declared, or one of zero bytes (whatever its
        Content-Type: clients set the header on every POST)."""
        headers = self._request.headers
        length = headers.get("content-length")
        if length == "0" or (length is None and not headers.get("content-type")
                             and "chunked" not in headers.get("transfer-encoding", "")):
            return None
        return await read_body(self._request, self._settings)
