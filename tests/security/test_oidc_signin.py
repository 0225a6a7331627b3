"""People sign in to the pages at an existing identity provider (issue #11 item 11): OpenID Connect authorization
code flow with PKCE against a small provider this test serves itself (discovery, authorization, token endpoint,
JWKS; an httpx transport of its own). The provider checks the PKCE verifier and the client's secret; the server
checks the state against its cookie, and the ID token's signature, issuer, audience, expiry and nonce; role and
center come from the configured claims as for the provider's access tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from fhir_server.bootstrap import start_services
from fhir_server.permissions import Role
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.security.signin import REPORT_TITLE, PageContexts, browser

ISSUER = "https://idp.example/realms/ifp"
AUTHORIZE = f"{ISSUER}/protocol/openid-connect/auth"
TOKEN = f"{ISSUER}/protocol/openid-connect/token"
JWKS = f"{ISSUER}/protocol/openid-connect/certs"
CLIENT_ID, CLIENT_SECRET = "ifp-pages", "pages-secret"
CALLBACK = "http://testserver/signin/callback"
EHR_USER = {"sub": "u-17", "realm_access": {"roles": ["offline_access", "ehr"]}, "center": "DE-HD"}


class Provider:
    """The identity provider: what it has issued codes for, and whether it is reachable."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)
        self.codes: dict[str, dict[str, Any]] = {}
        self.id_token_changes: dict[str, Any] = {}
        self.sign_with: RSAKey | None = None
        self.pkce_checked = 0
        self.down = False

    def serve(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        url = str(request.url.copy_with(query=None))
        if request.method == "GET" and url == f"{ISSUER}/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN, "jwks_uri": JWKS,
                "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"]})
        if request.method == "GET" and url == JWKS:
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if request.method == "POST" and url == TOKEN:
            return self._token(request)
        return httpx.Response(404)

    def sign_in(self, location: str, claims: dict[str, Any]) -> str:
        """The person signs in at the authorization endpoint: the redirect back to the server, with a code."""
        assert location.startswith(f"{AUTHORIZE}?")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert (query["response_type"], query["client_id"], query["code_challenge_method"]) == (
            "code", CLIENT_ID, "S256")
        assert "openid" in query["scope"].split() and query["nonce"] and query["state"]
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": query["code_challenge"], "nonce": query["nonce"],
                            "redirect_uri": query["redirect_uri"], "claims": claims}
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return httpx.Response(401, json={"error": "invalid_client"})
        issued = self.codes.pop(form.get("code", ""), None)  # a code is used once
        if form.get("grant_type") != "authorization_code" or issued is None \
                or form.get("redirect_uri") != issued["redirect_uri"]:
            return httpx.Response(400, json={"error": "invalid_grant"})
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued["challenge"]:
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "PKCE verification"})
        self.pkce_checked += 1
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT_ID, "azp": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": issued["nonce"], **issued["claims"], **self.id_token_changes}
        key = self.sign_with or self.key
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, key, algorithms=["RS256"])
        return httpx.Response(200, json={"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                         "expires_in": 300, "id_token": id_token})


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
async def oidc_services(settings: Settings, mongo_uri: str, services: Services, provider: Provider,
                        tmp_path: Any) -> AsyncIterator[Services]:
    configured = settings.model_copy(update={
        "auth_mode": "smart", "clients_file": tmp_path / "clients.json", "auth_issuer": ISSUER,
        "auth_jwks_uri": JWKS, "auth_role_claim": "realm_access.roles", "auth_center_claim": "center",
        "oidc_client_id": CLIENT_ID, "oidc_client_secret": SecretStr(CLIENT_SECRET)})
    svc = await start_services(configured, mongo_uri)
    assert svc.authority is not None and svc.authority.oidc is not None
    svc.authority.oidc.use_transport(httpx.MockTransport(provider.serve))
    try:
        yield svc
    finally:
        await svc.close()


async def _to_provider(http: httpx.AsyncClient, page: str = "/report") -> str:
    """A browser asks for a page: sent to /signin, then to the provider's authorization endpoint."""
    first = await http.get(page)
    assert first.status_code == 303 and first.headers["location"] == f"/signin?{urlencode({'next': page})}"
    second = await http.get(first.headers["location"])
    assert second.status_code == 303, second.text
    return second.headers["location"]


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_person_signs_in_with_pkce_and_sees_the_report_with_their_role_and_center(
        oidc_services: Services, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    contexts = PageContexts(monkeypatch)
    async with browser(oidc_services) as http:
        location = await _to_provider(http)
        assert parse_qs(urlsplit(location).query)["redirect_uri"] == [CALLBACK]
        back = await http.get(_local(provider.sign_in(location, EHR_USER)))
        assert back.status_code == 303 and back.headers["location"] == "/report", back.text
        cookie = back.headers.get_list("set-cookie")
        assert any(c.startswith("ifp_session=") and "HttpOnly" in c and "SameSite=lax" in c for c in cookie)
        page = await http.get("/report")
    assert provider.pkce_checked == 1
    assert page.status_code == 200 and REPORT_TITLE in page.text and "Signed in as u-17 (ehr, DE-HD)" in page.text
    [ctx] = contexts.seen
    assert (ctx.caller, ctx.role, ctx.center) == ("u-17", Role.EHR, "DE-HD")


async def test_the_state_cookie_binds_the_sign_in_to_its_browser_and_a_callback_works_once(
        oidc_services: Services, provider: Provider) -> None:
    async with browser(oidc_services) as http:
        location = await _to_provider(http)
        start = await http.get("/signin")  # the state cookie's flags
        cookie = start.headers["set-cookie"]
        assert cookie.startswith("ifp_signin=") and "HttpOnly" in cookie and "Path=/signin" in cookie
        callback = _local(provider.sign_in(location, EHR_USER))
        async with browser(oidc_services) as elsewhere:  # the same callback in another browser: no state cookie
            refused = await elsewhere.get(callback)
            assert refused.status_code == 400 and "ifp_session" not in elsewhere.cookies
        http.cookies.set("ifp_signin", parse_qs(urlsplit(location).query)["state"][0], path="/signin")
        assert (await http.get(callback)).status_code == 303
        replayed = await http.get(callback)
        assert replayed.status_code == 400 and "expired or was finished" in replayed.text


async def test_a_code_issued_to_another_sign_in_is_refused(oidc_services: Services, provider: Provider) -> None:
    """A code injected into the victim's sign-in: its PKCE verifier (and nonce) belong to the other sign-in."""
    async with browser(oidc_services) as attacker:
        attackers_code = parse_qs(urlsplit(provider.sign_in(await _to_provider(attacker), EHR_USER)).query)["code"][0]
    async with browser(oidc_services) as victim:
        location = await _to_provider(victim)
        state = parse_qs(urlsplit(location).query)["state"][0]
        response = await victim.get("/signin/callback", params={"code": attackers_code, "state": state})
        assert response.status_code == 400 and "refused" in response.text
        assert "ifp_session" not in victim.cookies and (await victim.get("/report")).status_code == 303
    assert provider.pkce_checked == 0


@pytest.mark.parametrize("changes", [{"nonce": "another-sign-in"}, {"aud": "another-client"},
                                     {"iss": "https://another-idp.example"}, {"exp": int(time.time()) - 600},
                                     {"sign_with": "stranger"}], ids=["nonce", "aud", "iss", "exp", "signature"])
async def test_an_id_token_not_for_this_sign_in_is_refused(oidc_services: Services, provider: Provider,
                                                           changes: dict[str, Any]) -> None:
    if changes.pop("sign_with", None):
        provider.sign_with = RSAKey.generate_key(2048, auto_kid=True)
    provider.id_token_changes = changes
    async with browser(oidc_services) as http:
        location = await _to_provider(http)
        response = await http.get(_local(provider.sign_in(location, EHR_USER)))
        assert response.status_code == 400 and "ID token is not accepted" in response.text, response.text
        assert "ifp_session" not in http.cookies


async def test_a_person_without_a_role_of_this_server_is_403(oidc_services: Services, provider: Provider) -> None:
    async with browser(oidc_services) as http:
        location = await _to_provider(http)
        response = await http.get(_local(provider.sign_in(location, {"sub": "u-9", "realm_access": {"roles": []}})))
    assert response.status_code == 403 and "ifp_session" not in http.cookies


async def test_an_unreachable_provider_is_503_with_retry_after(oidc_services: Services, provider: Provider) -> None:
    async with browser(oidc_services) as http:
        location = await _to_provider(http)
        callback = _local(provider.sign_in(location, EHR_USER))
        provider.down = True
        response = await http.get(callback)
    assert response.status_code == 503 and response.headers["retry-after"]
