"""Building the RequestContext and reading FHIR request headers (Prefer, If-*)."""

from __future__ import annotations

from starlette.requests import Request

from fhir_server.api.forwarded import client_address, public_base_url
from fhir_server.context import RequestContext
from fhir_server.interactions.request import parse_prefer
from fhir_server.permissions import Caller, Role
from fhir_server.settings import Settings

# Who calls a public endpoint (GET metadata) without proving anything: no scope, the narrowest role
ANONYMOUS = Caller(id="anonymous", role=Role.RESEARCHER, scopes=frozenset())


def prefer(request: Request) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> {"return": "minimal", "handling": "strict"}."""
    return parse_prefer(request.headers.getlist("prefer"))


def base_url(request: Request, settings: Settings) -> str:
    """The FHIR base of ``request``: ``FHIR_BASE_URL``, else as the request names the server."""
    return (settings.base_url or public_base_url(request, settings.trusted_proxy_networks) + "/fhir").rstrip("/")


async def request_context(request: Request, settings: Settings, *, public: bool = False) -> RequestContext:
    """The context of ``request``: its caller (from the app's authenticator; anonymous on a ``public``
    endpoint, which needs no token), base URL and Prefer handling."""
    caller = ANONYMOUS if public else await request.app.state.authenticator.authenticate(request)
    return RequestContext.for_caller(base_url(request, settings), caller,
                                     handling_strict=prefer(request).get("handling") == "strict",
                                     client_address=client_address(request, settings.trusted_proxy_networks))
