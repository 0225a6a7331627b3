"""Access tokens of an existing identity provider (issue #11 item 9): with ``FHIR_AUTH_ISSUER`` and
``FHIR_AUTH_JWKS_URI`` set, its tokens are accepted: signature (a key of its JWKS, which this test serves
itself through an HTTP transport of its own), ``iss``, ``aud`` (``FHIR_AUTH_AUDIENCE``), ``exp``; the role and
center from the configured claims, scopes from ``scope`` or ``scp``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from fhir_server.bootstrap import start_services
from fhir_server.security import remote_keys
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.security.tokens import bearer_client

ISSUER = "https://idp.example/realms/ifp"
JWKS_URI = "https://idp.example/realms/ifp/certs"
AUDIENCE = "ifp-fhir"


class Provider:
    """The identity provider: its signing keys, and its JWKS endpoint (counting the fetches)."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)]
        self.fetches = 0

    def serve(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URI
        self.fetches += 1
        return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})

    def token(self, key: RSAKey | None = None, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "exp": now + 120, "iat": now,
                  "realm_access": {"roles": ["offline_access", "ehr"]}, "center": "DE-HD",
                  "scp": ["system/Patient.rs", "openid"]}
        claims = {k: v for k, v in {**claims, **changes}.items() if v is not None}
        key = key or self.keys[0]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


@pytest.fixture(scope="module")
def provider() -> Provider:
    return Provider()


@pytest.fixture(scope="module")
async def idp_services(settings: Settings, mongo_uri: str, services: Services, provider: Provider,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    configured = settings.model_copy(update={
        "auth_mode": "smart", "clients_file": tmp_path_factory.mktemp("idp") / "clients.json",
        "auth_issuer": ISSUER, "auth_jwks_uri": JWKS_URI, "auth_audience": AUDIENCE,
        "auth_role_claim": "realm_access.roles", "auth_center_claim": "center"})
    svc = await start_services(configured, mongo_uri)
    assert svc.authority is not None
    svc.authority.remote.use_http(httpx.AsyncClient(transport=httpx.MockTransport(provider.serve)))
    try:
        yield svc
    finally:
        await svc.close()


async def _status(services: Services, token: str, path: str = "/fhir/Patient?_count=1") -> httpx.Response:
    async with bearer_client(services, token) as http:
        return await http.get(path)


async def test_a_token_of_the_identity_provider_is_accepted_with_its_role_and_scopes(
        idp_services: Services, provider: Provider) -> None:
    assert (await _status(idp_services, provider.token())).status_code == 200
    # scp allows Patient only; the role (ehr, from realm_access.roles) allows no conformance write
    assert (await _status(idp_services, provider.token(), "/fhir/Observation")).status_code == 403
    scope = provider.token(scp=None, scope="system/*.rs")
    assert (await _status(idp_services, scope, "/fhir/Observation?_count=1")).status_code == 200


async def test_a_token_of_the_provider_for_another_audience_expired_or_forged_is_401(
        idp_services: Services, provider: Provider) -> None:
    stranger = RSAKey.generate_key(2048, auto_kid=True)
    forged = jwt.encode({"alg": "RS256", "kid": provider.keys[0].kid},
                        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "sub": "x"}, stranger,
                        algorithms=["RS256"])
    for token in (provider.token(aud="another-api"), provider.token(exp=int(time.time()) - 60),
                  provider.token(iss="https://another-idp.example"), forged):
        response = await _status(idp_services, token)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_without_a_known_role_or_an_ehr_without_center_is_403(
        idp_services: Services, provider: Provider) -> None:
    for token in (provider.token(realm_access={"roles": ["offline_access"]}), provider.token(center=None)):
        assert (await _status(idp_services, token)).status_code == 403


async def test_a_key_the_provider_rotated_in_is_fetched(idp_services: Services, provider: Provider,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_keys, "REFETCH_SECONDS", 0.0)
    new = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)
    provider.keys.append(new)
    before = provider.fetches
    assert (await _status(idp_services, provider.token(key=new))).status_code == 200
    assert provider.fetches == before + 1
    assert (await _status(idp_services, provider.token(key=new))).status_code == 200
    assert provider.fetches == before + 1  # cached


async def test_the_servers_own_tokens_are_still_accepted_beside_the_providers(idp_services: Services) -> None:
    from tests.security.tokens import ClientsFile, app_client, token_for

    clients = ClientsFile(idp_services.settings.clients_path)
    async with app_client(idp_services) as anonymous:
        token = await token_for(anonymous, clients.register("researcher"), "system/*.rs")
    assert (await _status(idp_services, token)).status_code == 200
