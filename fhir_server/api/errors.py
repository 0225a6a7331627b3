"""The one place where errors become HTTP statuses and OperationOutcome bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import errors
from fhir_server.api.negotiation import FHIR_JSON, fhir_response, negotiated_media_type
from fhir_server.storage import faults

log = logging.getLogger("fhir_server")

def error_response(exc: errors.FhirError, request: Request | None = None) -> Response:
    """The OperationOutcome of ``exc``, in the FHIR format the request negotiated or asks for (JSON without one)."""
    return _outcome_response(exc.outcome(), exc.status, exc.headers, request)


def _outcome(request: Request, status: int, code: str, diagnostics: str) -> Response:
    issue = errors.Issue("error" if status < 500 else "fatal", code, diagnostics)
    return _outcome_response(errors.operation_outcome([issue]), status, None, request)


def _outcome_response(outcome: dict[str, object], status: int, headers: dict[str, str] | None,
                      request: Request | None) -> Response:
    media_type = negotiated_media_type(request) if request is not None else FHIR_JSON
    try:
        return fhir_response(outcome, status, headers, media_type=media_type)
    except errors.NotAcceptable:  # a diagnostic quoting what XML cannot carry: the error still gets its answer
        return fhir_response(outcome, status, headers, media_type=FHIR_JSON)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.FhirError)
    async def _fhir_error(request: Request, exc: errors.FhirError) -> Response:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _outcome(request, 400, "invalid", f"Invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"No such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return _outcome(request, exc.status_code, code, detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if faults.is_transient(exc):  # a database failure storage did not translate (e.g. a streamed cursor)
            log.warning("Database unavailable on %s %s: %s", request.method, request.url.path, exc)
            return error_response(faults.unavailable(exc), request)
        log.exception("Unhandled error on %s %s", request.method, request.url.path)
        return _outcome(request, 500, "exception", f"Internal error: {type(exc).__name__}")
