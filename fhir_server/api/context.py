"""Building the RequestContext and reading FHIR request headers (Prefer, If-*)."""

from __future__ import annotations

from starlette.requests import Request

from fhir_server.context import RequestContext
from fhir_server.interactions.request import parse_prefer
from fhir_server.settings import Settings


def prefer(request: Request) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> {"return": "minimal", "handling": "strict"}."""
    return parse_prefer(request.headers.getlist("prefer"))


async def request_context(request: Request, settings: Settings) -> RequestContext:
    """The context of ``request``: its caller (from the app's authenticator), base URL and Prefer handling."""
    caller = await request.app.state.authenticator.authenticate(request)
    return RequestContext.for_caller(base_url(request, settings), caller,
                                     handling_strict=prefer(request).get("handling") == "strict",
                                     client_address=request.client.host if request.client else None)


def base_url(request: Request, settings: Settings) -> str:
    """The FHIR base of this server as the client sees it (``FHIR_BASE_URL``, or from the request)."""
    base = settings.base_url or str(request.base_url).rstrip("/") + "/fhir"
    return base.rstrip("/")
