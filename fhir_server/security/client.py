"""The client side of SMART Backend Services, for this project's own tools (``fhir-server token``,
``fhir-server import-csv``, the benchmarks, the tests): discover the token endpoint from
``[base]/.well-known/smart-configuration``, sign a client assertion (RFC 7523) with the client's private key,
POST it, and use the access token until shortly before it expires.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass

import httpx
from joserfc import jwt
from joserfc.jwk import Key

from fhir_server.security.authority import JWT_BEARER

ASSERTION_LIFETIME = 240  # seconds; the server accepts at most 300
RENEW_BEFORE = 30  # seconds before expiry a token is renewed


class TokenRequestFailed(RuntimeError):
    """The server refused the token request (its ``error`` and description are in the message)."""


def client_assertion(key: Key, client_id: str, token_url: str, *, lifetime: int = ASSERTION_LIFETIME,
                     issued_at: int | None = None) -> str:
    at = int(time.time()) if issued_at is None else issued_at
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": at + lifetime, "iat": at,
              "jti": uuid.uuid4().hex}
    alg = key.alg or "ES384"
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def token_form(key: Key, client_id: str, token_url: str, scope: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion(key, client_id, token_url)}


@dataclass(frozen=True)
class AccessToken:
    value: str
    scope: str
    expires_at: float  # time.monotonic()


def _discovery_request(base_url: str) -> httpx.Request:
    return httpx.Request("GET", f"{base_url.rstrip('/')}/.well-known/smart-configuration",
                         headers={"Accept": "application/json"})


def _token_endpoint(response: httpx.Response) -> str | None:
    """The token endpoint a discovery response names; None when the server takes no tokens (404:
    ``FHIR_AUTH_MODE=none``)."""
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise TokenRequestFailed(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return str(response.json()["token_endpoint"])


def _token(response: httpx.Response) -> AccessToken:
    if response.status_code != 200:
        try:
            body = response.json()
            reason = f"{body.get('error')}: {body.get('error_description')}"
        except ValueError:
            reason = response.text[:300]
        raise TokenRequestFailed(f"the token endpoint refused: {response.status_code} {reason}")
    body = response.json()
    return AccessToken(body["access_token"], body.get("scope", ""),
                       time.monotonic() + float(body.get("expires_in", 60)))


def _flow(base_url: str, client_id: str, key: Key, scope: str) -> Generator[httpx.Request, httpx.Response,
                                                                            AccessToken | None]:
    """Discovery then the token request, as requests to send; the token (None: the server needs none)."""
    endpoint = _token_endpoint((yield _discovery_request(base_url)))
    if endpoint is None:
        return None
    form = token_form(key, client_id, endpoint, scope)
    return _token((yield httpx.Request("POST", endpoint, data=form, headers={"Accept": "application/json"})))


def fetch_token(http: httpx.Client, base_url: str, client_id: str, key: Key, scope: str) -> AccessToken | None:
    """Run the backend-services flow with ``http``; the access token (None when the server needs none)."""
    flow = _flow(base_url, client_id, key, scope)
    request = next(flow)
    try:
        while True:
            request = flow.send(http.send(request))
    except StopIteration as done:
        return done.value


class BackendServicesAuth(httpx.Auth):
    """httpx authentication (sync and async clients) with a token of the backend-services flow, fetched on the
    first request, renewed before it expires, and once more when the server answers 401."""

    requires_response_body = True  # the token endpoint's answer is read inside the flow

    def __init__(self, base_url: str, client_id: str, key: Key, scope: str = "system/*.cruds") -> None:
        self.base_url, self.client_id, self.key, self.scope = base_url, client_id, key, scope
        self._token: AccessToken | None = None
        self._needs_none = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._needs_none and (self._token is None or self._token.expires_at - RENEW_BEFORE < time.monotonic()):
            yield from self._renew()
        response = yield self._authorized(request)
        if response.status_code == 401 and not self._needs_none:
            yield from self._renew()
            yield self._authorized(request)

    def _renew(self) -> Generator[httpx.Request, httpx.Response, None]:
        self._token = yield from _flow(self.base_url, self.client_id, self.key, self.scope)
        self._needs_none = self._token is None

    def _authorized(self, request: httpx.Request) -> httpx.Request:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token.value}"
        return request


SIGNIN_LINK_PATH = "auth/signin-link"


def fetch_signin_link(http: httpx.Client, base_url: str, token: AccessToken) -> str:
    """A single-use link that signs a person in to the pages as the token's client (``fhir-server signin-link``)."""
    response = http.post(f"{base_url.rstrip('/')}/{SIGNIN_LINK_PATH}",
                         headers={"Authorization": f"Bearer {token.value}", "Accept": "application/json"})
    if response.status_code != 200:
        raise TokenRequestFailed(f"no sign-in link: {response.status_code} {response.text[:300]}")
    return str(response.json()["url"])
