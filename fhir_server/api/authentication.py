"""Who is calling: every request's ``Caller`` comes from the app's one ``Authenticator``.

``FHIR_AUTH_MODE=none`` makes every request the full-access system caller (``FullAccess``); ``smart`` (SMART
Backend Services, https://hl7.org/fhir/smart-app-launch/backend-services.html) reads the bearer token into the
caller's role, scopes and center (``SmartAuthenticator``): a missing, malformed, expired or foreign-signed token
is a 401 with ``WWW-Authenticate: Bearer``. Tests of access rules give the app a ``FixedCaller``: the rules
under test are the server's, only the identity is given.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from fhir_server.api.context import base_url
from fhir_server.permissions import Caller
from fhir_server.services import Services
from fhir_server.settings import Settings


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Caller:
        """The caller of ``request``; raises ``Unauthorized`` when it proves no identity."""
        ...


class FullAccess:
    """``FHIR_AUTH_MODE=none``: every request is the system caller."""

    async def authenticate(self, request: Request) -> Caller:
        del request
        return Caller.system()


class FixedCaller:
    """Every request is ``caller`` (tests of access rules, where the identity is given, not proved)."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    async def authenticate(self, request: Request) -> Caller:
        del request
        return self.caller


class SmartAuthenticator:
    """``FHIR_AUTH_MODE=smart``: the caller is what the request's bearer token proves (this server's token, or
    the configured identity provider's)."""

    async def authenticate(self, request: Request) -> Caller:
        services: Services = request.app.state.services
        if services.authority is None:
            raise RuntimeError("FHIR_AUTH_MODE=smart needs the services' authority (bootstrap.start_services)")
        return await services.authority.caller(request.headers.get("authorization"),
                                               base_url(request, services.settings))


def authenticator_for(settings: Settings) -> Authenticator:
    """The authenticator ``FHIR_AUTH_MODE`` names."""
    return SmartAuthenticator() if settings.auth_mode == "smart" else FullAccess()
