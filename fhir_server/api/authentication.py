"""Who is calling: every request's ``Caller`` comes from the app's one ``Authenticator``.

``FHIR_AUTH_MODE=none`` makes every request the full-access system caller (``FullAccess``); issue #11's SMART
Backend Services mode (https://hl7.org/fhir/smart-app-launch/backend-services.html) reads the bearer token
into the caller's role, scopes and center. Tests of access rules give the app a ``FixedCaller``: the rules
under test are the server's, only the identity is given.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from fhir_server.permissions import Caller


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
