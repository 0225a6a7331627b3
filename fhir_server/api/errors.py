"""The one place where errors become HTTP statuses and OperationOutcome bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import errors
from fhir_server.api.negotiation import fhir_response
from fhir_server.storage import faults

log = logging.getLogger("fhir_server")

def error_response(exc: errors.FhirError) -> Response:
    return fhir_response(exc.outcome(), exc.status, exc.headers)


def _outcome(status: int, code: str, diagnostics: str) -> Response:
    issue = errors.Issue("error" if status < 500 else "fatal", code, diagnostics)
    return fhir_response(errors.operation_outcome([issue]), status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.FhirError)
    async def _fhir_error(_: Request, exc: errors.FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        return _outcome(400, "invalid", f"Invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"No such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return _outcome(exc.status_code, code, detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if faults.is_transient(exc):  # a database failure storage did not translate (e.g. a streamed cursor)
            log.warning("Database unavailable on %s %s: %s", request.method, request.url.path, exc)
            return error_response(faults.unavailable(exc))
        log.exception("Unhandled error on %s %s", request.method, request.url.path)
        return _outcome(500, "exception", f"Internal error: {type(exc).__name__}")
