"""Who looks at a page for people (``/report``): in ``FHIR_AUTH_MODE=smart``, the person of the page session
(the ``ifp_session`` cookie, see ``security/sessions.py`` and ``api/signin.py``), or a program sending a bearer
token as to the API; nobody else (``SignInRequired``: a redirect to sign in, or a page saying how). In
``FHIR_AUTH_MODE=none`` (and in tests giving the app a fixed caller) the app's authenticator answers alone.

The page's ``RequestContext`` comes from that caller exactly as an API request's does: role, center and scopes
apply to the page as to the API.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from starlette.requests import Request

from fhir_server.api.authentication import SmartAuthenticator
from fhir_server.api.context import base_url
from fhir_server.context import RequestContext
from fhir_server.permissions import Caller
from fhir_server.security.authority import Authority
from fhir_server.security.sessions import PageSession
from fhir_server.settings import Settings

SESSION_COOKIE = "ifp_session"
SIGNIN_PATH = "/signin"
LOGOUT_PATH = "/logout"


class SignInRequired(Exception):
    """A page was asked for without a session; ``next_path`` is where to come back once signed in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(f"sign in to see {next_path}")
        self.next_path = next_path


def authority(request: Request) -> Authority:
    found: Authority | None = request.app.state.services.authority
    if found is None:
        raise RuntimeError("FHIR_AUTH_MODE=smart needs the services' authority (bootstrap.start_services)")
    return found


def pages_root(request: Request, settings: Settings) -> str:
    """Where the pages are: the FHIR base without its ``/fhir`` (``FHIR_BASE_URL`` behind a proxy), else as the
    request names the server."""
    fhir_base = base_url(request, settings)
    if fhir_base.endswith("/fhir"):
        return fhir_base.removesuffix("/fhir")
    return str(request.base_url).rstrip("/")


def signin_url(next_path: str) -> str:
    return f"{SIGNIN_PATH}?{urlencode({'next': next_path})}"


async def page_caller(request: Request) -> Caller:
    """The caller of a page request; ``SignInRequired`` in smart mode without a session or a bearer token."""
    authenticator = request.app.state.authenticator
    if not isinstance(authenticator, SmartAuthenticator) or request.headers.get("authorization"):
        caller: Caller = await authenticator.authenticate(request)
        return caller
    session = await authority(request).sessions.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(here)
    request.state.page_session = session
    return session.caller


async def page_context(request: Request, settings: Settings) -> RequestContext:
    return RequestContext.for_caller(base_url(request, settings), await page_caller(request))


def account_bar(request: Request) -> str:
    """Who is signed in, and the sign-out button (a POST carrying the session's CSRF token); empty without a
    session."""
    session: PageSession | None = getattr(request.state, "page_session", None)
    if session is None:
        return ""
    caller = session.caller
    who = f"{caller.id} ({caller.role.value}{', ' + caller.center if caller.center else ''})"
    return (f'<form class="account" method="post" action="{LOGOUT_PATH}">Signed in as {escape(who)} '
            f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
            '<button type="submit">Sign out</button></form>')
