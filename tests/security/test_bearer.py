"""Every request but the discovery documents needs a valid bearer token (RFC 6750): missing, malformed,
expired or foreign-signed is 401 with ``WWW-Authenticate: Bearer`` and an OperationOutcome. Any server process
accepts a token another issued, and rotating the signing keys invalidates no token in flight."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt

from fhir_server.bootstrap import start_services
from fhir_server.security.registration import new_key
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.security.conftest import AsRole
from tests.security.tokens import BASE, ClientsFile, app_client, bearer_client, token_for, unsigned


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims = {"iss": BASE, "aud": BASE, "sub": "x", "role": "admin", "scope": "system/*.cruds", "iat": now,
              "exp": now + 60, "jti": "j"}
    return {k: v for k, v in {**claims, **changes}.items() if v is not None}


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"


async def test_a_request_without_a_token_is_401(anonymous: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/fhir/Patient"), ("GET", "/fhir/Patient/x"), ("POST", "/fhir"),
                         ("GET", "/fhir/$registry-report"), ("GET", "/report"), ("GET", "/fhir/NoSuchType")):
        _assert_401(await anonymous.request(method, path))


@pytest.mark.parametrize("header", ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b.c"])
async def test_a_malformed_authorization_is_401(smart_services: Services, header: str) -> None:
    async with app_client(smart_services, Authorization=header) as http:
        _assert_401(await http.get("/fhir/Patient"))


async def test_an_expired_token_is_401(smart_services: Services) -> None:
    key = await smart_services.authority.keys.current()  # type: ignore[union-attr]
    expired = jwt.encode({"alg": "ES384", "kid": key.kid}, _claims(exp=int(time.time()) - 60), key,
                         algorithms=["ES384"])
    async with bearer_client(smart_services, expired) as http:
        response = await http.get("/fhir/Patient")
    _assert_401(response)
    assert "expired" in response.json()["issue"][0]["diagnostics"]


async def test_a_foreign_signed_token_is_401(smart_services: Services) -> None:
    """Signed by a key this server does not publish, forged with this server's kid, or not signed at all."""
    own = await smart_services.authority.keys.current()  # type: ignore[union-attr]
    stranger = new_key()
    for token in (jwt.encode({"alg": "ES384", "kid": stranger.kid}, _claims(), stranger, algorithms=["ES384"]),
                  jwt.encode({"alg": "ES384", "kid": own.kid}, _claims(), stranger, algorithms=["ES384"]),
                  unsigned({"alg": "none", "kid": own.kid}, _claims())):
        async with bearer_client(smart_services, token) as http:
            _assert_401(await http.get("/fhir/Patient"))


async def test_a_token_for_another_server_is_401(smart_services: Services) -> None:
    key = await smart_services.authority.keys.current()  # type: ignore[union-attr]
    for claims in (_claims(aud="https://other.example/fhir"), _claims(iss="https://other.example/fhir")):
        token = jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])
        async with bearer_client(smart_services, token) as http:
            _assert_401(await http.get("/fhir/Patient"))


async def test_a_valid_token_is_served(as_role: AsRole) -> None:
    http = await as_role("admin")
    response = await http.get("/fhir/Patient", params={"_count": "1"})
    assert response.status_code == 200, response.text


async def test_another_server_process_accepts_a_token_this_one_issued(
        smart_settings: Settings, mongo_uri: str, smart_services: Services, anonymous: httpx.AsyncClient,
        clients: ClientsFile) -> None:
    token = await token_for(anonymous, clients.register("researcher"), "system/*.rs")
    second = await start_services(smart_settings, mongo_uri)
    try:
        async with bearer_client(second, token) as http:
            assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
    finally:
        await second.close()


async def test_a_replayed_assertion_is_refused_by_another_process(
        smart_settings: Settings, mongo_uri: str, smart_services: Services, anonymous: httpx.AsyncClient,
        clients: ClientsFile) -> None:
    from tests.security.tokens import assertion, form, request_token

    once = assertion(clients.register("admin"))
    assert (await request_token(anonymous, form(once))).status_code == 200
    second = await start_services(smart_settings, mongo_uri)
    try:
        async with app_client(second) as http:
            replayed = await request_token(http, form(once))
    finally:
        await second.close()
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_client")


async def test_rotating_the_signing_key_keeps_tokens_in_flight_valid(
        smart_settings: Settings, mongo_uri: str, smart_services: Services, anonymous: httpx.AsyncClient,
        clients: ClientsFile) -> None:
    client = clients.register("admin")
    before = await token_for(anonymous, client)
    await smart_services.authority.keys.rotate()  # type: ignore[union-attr]
    after = await token_for(anonymous, client)
    second = await start_services(smart_settings, mongo_uri)  # a process that never saw the old key
    try:
        for token in (before, after):
            for services in (smart_services, second):
                async with bearer_client(services, token) as http:
                    assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
    finally:
        await second.close()
    published = {key["kid"] for key in (await anonymous.get("/fhir/.well-known/jwks.json")).json()["keys"]}
    kids = {_kid(before), _kid(after)}
    assert len(kids) == 2 and kids <= published


def _kid(token: str) -> str:
    from joserfc.jws import extract_compact

    return str(extract_compact(token.encode()).protected["kid"])
