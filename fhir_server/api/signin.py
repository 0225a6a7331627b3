"""People sign in to the pages (issue #11 item 11), in ``FHIR_AUTH_MODE=smart``:

- ``GET /signin?code=...``: a single-use link of ``fhir-server signin-link`` (valid five minutes) opens a session
  of that client's role and center, then sends the person on (``next``, default ``/report``);
- ``GET /signin``: with an identity provider (``FHIR_AUTH_ISSUER`` and ``FHIR_OIDC_CLIENT_ID``), the OpenID
  Connect authorization code flow with PKCE (``security/oidc.py``); it comes back to ``GET /signin/callback``.
  Without one, a page saying how to sign in;
- ``POST /logout``: ends the session (its form carries the session's CSRF token; the cookie is SameSite=Lax, so a
  cross-site form sends none);
- ``POST /fhir/auth/signin-link``: for a bearer token's client, mints a sign-in link (what the CLI calls).

A page asked for without a session sends a browser (``Accept: text/html``) to sign in: to ``/signin`` with an
identity provider, else to a page saying how (401); a program gets the API's 401 and OperationOutcome.

The session cookie ``ifp_session`` is HttpOnly, SameSite=Lax, Secure when the pages are served over https; it
holds a random secret of a session record in MongoDB (see ``security/sessions.py`` for why server-side).
"""

from __future__ import annotations

import json
import secrets
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.api.errors import error_response
from fhir_server.api.negotiation import read_raw_body
from fhir_server.api.pages import (
    LOGOUT_PATH,
    SESSION_COOKIE,
    SIGNIN_PATH,
    SignInRequired,
    authority,
    pages_root,
    signin_url,
)
from fhir_server.errors import Forbidden, Unauthorized
from fhir_server.permissions import Caller
from fhir_server.reports.html import page
from fhir_server.security.oidc import ProviderUnavailable, SignInError
from fhir_server.security.sessions import LOGIN_SECONDS, SIGNIN_LINK_SECONDS
from fhir_server.settings import Settings

LOGIN_COOKIE = "ifp_signin"  # binds an OpenID Connect sign-in's state to the browser that started it
CALLBACK_PATH = f"{SIGNIN_PATH}/callback"
DEFAULT_PAGE = "/report"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_MAX_FORM_BYTES = 4096

router = APIRouter()


def install_signin(app: FastAPI) -> None:
    """The sign-in routes, and a page without a session answered by a sign-in (smart mode only)."""
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if "text/html" not in request.headers.get("accept", ""):  # a program, not a browser: as the API answers
            return error_response(Unauthorized(f"{exc.next_path} needs a signed-in session ({SIGNIN_PATH}) or an "
                                               "access token: Authorization: Bearer <token>", token_given=False))
        if authority(request).oidc is not None:
            return RedirectResponse(signin_url(exc.next_path), status_code=303, headers=_NO_STORE)
        return _how_to_sign_in(401, {"WWW-Authenticate": 'Bearer realm="fhir"'})


@router.get(SIGNIN_PATH)
async def signin(request: Request) -> Response:
    next_path = _local_path(request.query_params.get("next"))
    code = request.query_params.get("code")
    if code is not None:
        caller = await authority(request).sessions.redeem_link(code)
        if caller is None:
            return _message(400, "This sign-in link is not valid", "It was used already, it is older than five "
                            "minutes, or it was mistyped. Run <code>fhir-server signin-link</code> for a new one.")
        return await _signed_in(request, caller, "link", next_path)
    oidc = authority(request).oidc
    if oidc is None:
        return _how_to_sign_in(200)
    login = await authority(request).sessions.begin_login(next_path)
    try:
        target = await oidc.authorization_url(login, _callback_url(request))
    except SignInError as exc:
        return _failed(exc)
    response = RedirectResponse(target, status_code=303, headers=_NO_STORE)
    _set_cookie(request, response, LOGIN_COOKIE, login.state, LOGIN_SECONDS, path=SIGNIN_PATH)
    return response


@router.get(CALLBACK_PATH)
async def signin_callback(request: Request) -> Response:
    params = request.query_params
    if params.get("error"):
        return _message(400, "The identity provider did not sign you in",
                        f"{escape(params['error'])}: {escape(params.get('error_description') or '')}")
    state, code = params.get("state") or "", params.get("code") or ""
    cookie = request.cookies.get(LOGIN_COOKIE) or ""
    if not state or not code or not secrets.compare_digest(state.encode(), cookie.encode()):
        return _message(400, "This sign-in was not started in this browser",
                        f'Start again: <a href="{SIGNIN_PATH}">sign in</a>.')
    auth = authority(request)
    login = await auth.sessions.finish_login(state)
    if login is None or auth.oidc is None:
        return _message(400, "This sign-in has expired or was finished already",
                        f'Start again: <a href="{SIGNIN_PATH}">sign in</a>.')
    try:
        caller = await auth.oidc.caller(code, login, _callback_url(request))
    except SignInError as exc:
        return _failed(exc)
    except Forbidden as exc:
        return _message(403, "You may not use these pages", escape(str(exc)))
    response = await _signed_in(request, caller, "oidc", login.next_path)
    response.delete_cookie(LOGIN_COOKIE, path=SIGNIN_PATH)
    return response


@router.post(LOGOUT_PATH)
async def logout(request: Request) -> Response:
    form = dict(parse_qsl((await read_raw_body(request, _MAX_FORM_BYTES)).decode("utf-8", "replace")))
    secret = request.cookies.get(SESSION_COOKIE) or ""
    sessions = authority(request).sessions
    session = await sessions.session(secret)
    if session is not None:
        if not secrets.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            return _message(403, "Not signed out", "The sign-out form did not come from this server's page.")
        await sessions.close(secret)
    response = _message(200, "Signed out", f'<a href="{SIGNIN_PATH}">Sign in again</a>.')
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/fhir/auth/signin-link")
async def signin_link(request: Request) -> Response:
    """A single-use sign-in link for the bearer token's client (``fhir-server signin-link``)."""
    caller: Caller = await request.app.state.authenticator.authenticate(request)
    code = await authority(request).sessions.new_link(caller)
    url = f"{pages_root(request, _settings(request))}{SIGNIN_PATH}?code={code}"
    return Response(json.dumps({"url": url, "expires_in": SIGNIN_LINK_SECONDS}), media_type="application/json",
                    headers=_NO_STORE)


async def _signed_in(request: Request, caller: Caller, via: str, next_path: str) -> Response:
    """Open a session (closing the one this browser had: a new sign-in never reuses a session id)."""
    sessions = authority(request).sessions
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await sessions.close(previous)
    secret = await sessions.open(caller, via)
    response = RedirectResponse(next_path, status_code=303, headers=_NO_STORE)
    _set_cookie(request, response, SESSION_COOKIE, secret, sessions.lifetime, path="/")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int, path: str) -> None:
    secure = pages_root(request, _settings(request)).startswith("https://")
    response.set_cookie(name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="lax")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.services.settings
    return settings


def _callback_url(request: Request) -> str:
    return pages_root(request, _settings(request)) + CALLBACK_PATH


def _local_path(value: str | None) -> str:
    """A page of this server to go to after signing in; anything else (another site: an open redirect) is the
    report."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_PAGE
    return value


def _message(status: int, title: str, html_text: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    body = f"<h1>{escape(title)}</h1><p>{html_text}</p>"
    return HTMLResponse(page(title, body), status_code=status, headers={**_NO_STORE, **(headers or {})})


def _failed(exc: SignInError) -> HTMLResponse:
    if isinstance(exc, ProviderUnavailable):
        return _message(503, "The identity provider cannot be reached", escape(str(exc)), {"Retry-After": "30"})
    return _message(400, "Sign-in refused", escape(str(exc)))


def _how_to_sign_in(status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    return _message(status, "Sign in to the IFP registry pages",
                    "This server signs people in with a single-use link. On the server, run "
                    "<code>fhir-server signin-link</code> (or <code>fhir-server signin-link --client ID</code> for "
                    "another registered client's role and center) and open the link it prints within five "
                    "minutes. Programs may send <code>Authorization: Bearer</code> as to the API.", headers)
