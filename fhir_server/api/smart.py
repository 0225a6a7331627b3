"""SMART App Launch 2.x Backend Services over HTTP (https://hl7.org/fhir/smart-app-launch/backend-services.html):
``POST /fhir/auth/token`` (the token endpoint), ``GET /fhir/.well-known/smart-configuration`` (discovery) and
``GET /fhir/.well-known/jwks.json`` (the keys this server signs access tokens with). None of them needs a token.

Included before the FHIR catch-all router, in ``FHIR_AUTH_MODE=smart`` only. The token endpoint's answers are
OAuth 2.0's (RFC 6749 section 5.1 and 5.2): JSON, never cached; an error is a 400 with ``error`` and
``error_description``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.context import base_url
from fhir_server.api.forwarded import client_address
from fhir_server.api.negotiation import read_raw_body
from fhir_server.interactions import audit_event
from fhir_server.security.assertions import TokenRequestError
from fhir_server.security.authority import JWKS_PATH, TOKEN_PATH, Authority
from fhir_server.services import Services

router = APIRouter(prefix="/fhir")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 64 * 1024  # a client assertion is a few kB


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")


def _authority(request: Request) -> tuple[Authority, str]:
    services: Services = request.app.state.services
    if services.authority is None:
        raise RuntimeError("FHIR_AUTH_MODE=smart needs the services' authority (bootstrap.start_services)")
    return services.authority, base_url(request, services.settings)


@router.post(f"/{TOKEN_PATH}")
async def token(request: Request) -> Response:
    """Every answer, a token or a refusal, leaves an AuditEvent (``_audit``)."""
    authority, base = _authority(request)
    form: list[tuple[str, str]] = []
    try:
        form = await _form(request)
        answer = await authority.token(form, base)
    except TokenRequestError as exc:
        _audit(request, authority, base, form, f"{exc.error}: {exc.description}")
        return _json({"error": exc.error, "error_description": exc.description}, 400, _NO_STORE)
    _audit(request, authority, base, form, None)
    return _json(answer, 200, _NO_STORE)


def _audit(request: Request, authority: Authority, base: str, form: list[tuple[str, str]], error: str | None) -> None:
    services: Services = request.app.state.services
    claimed = authority.claimed_client(form)
    client_id, client = claimed if claimed is not None else (None, None)
    audit_event.record_authentication(
        services, base, TOKEN_PATH, client_id, client.role if client else None, client.center if client else None,
        client_address(request, services.settings.trusted_proxy_networks), error)


async def _form(request: Request) -> list[tuple[str, str]]:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise TokenRequestError("invalid_request", "the token request is a form: application/x-www-form-urlencoded")
    raw = await read_raw_body(request, _MAX_FORM_BYTES)
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise TokenRequestError("invalid_request", "the form is not UTF-8") from exc


@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    authority, base = _authority(request)
    return _json(authority.smart_configuration(base))


@router.get(f"/{JWKS_PATH}")
async def jwks(request: Request) -> Response:
    authority, _ = _authority(request)
    return _json(await authority.jwks(), headers={"Cache-Control": "max-age=60"})
