"""The token endpoint and discovery of SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html), over HTTP, with real client assertions."""

from __future__ import annotations

import time

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from fhir_server.security.registration import new_key
from tests.security.tokens import TOKEN_URL, ClientsFile, assertion, form, request_token, unsigned


async def test_discovery_names_the_token_endpoint_and_what_it_supports(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == TOKEN_URL
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(config["capabilities"])
    assert "system/*.rs" in config["scopes_supported"]
    keys = (await anonymous.get("/fhir/.well-known/jwks.json")).json()["keys"]
    assert keys and all("d" not in key and key["kid"] for key in keys)


async def test_the_capability_statement_needs_no_token_and_names_the_token_endpoint(
        anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/fhir/metadata")
    assert response.status_code == 200
    security = response.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [oauth] = security["extension"]
    assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert oauth["extension"] == [{"url": "token", "valueUri": TOKEN_URL}]


async def test_versions_needs_no_token_either(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/fhir/$versions")
    assert response.status_code == 200, response.text
    assert {"name": "default", "valueCode": "4.0"} in response.json()["parameter"]
    assert (await anonymous.get("/fhir/Patient/$meta")).status_code == 401  # only discovery is public


async def test_a_client_gets_a_bearer_token_with_the_scopes_granted(anonymous: httpx.AsyncClient,
                                                                    clients: ClientsFile) -> None:
    client = clients.register("researcher")
    response = await request_token(anonymous, form(assertion(client), "system/Observation.rs system/Patient.read"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"].split() == ["system/Observation.rs", "system/Patient.rs"]  # v1 read is v2 rs
    assert response.headers["cache-control"] == "no-store"


async def test_scopes_beyond_the_role_are_narrowed_and_a_scope_with_nothing_left_is_invalid_scope(
        anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    narrowed = await request_token(anonymous, form(assertion(client), "system/*.cruds"))
    assert narrowed.json()["scope"] == "system/*.rs"
    refused = await request_token(anonymous, form(assertion(client), "system/Patient.cud"))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")


async def test_the_clients_registered_scope_caps_what_it_is_granted(anonymous: httpx.AsyncClient,
                                                                    clients: ClientsFile) -> None:
    capped = clients.register("ehr", "FR-POI")
    entries = clients.entries()
    next(e for e in entries if e["client_id"] == capped.client_id)["scope"] = "system/Observation.rs"
    clients.write(entries)
    granted = await request_token(anonymous, form(assertion(capped), "system/*.cruds"))
    assert granted.json()["scope"] == "system/Observation.rs"
    refused = await request_token(anonymous, form(assertion(capped), "system/Patient.rs"))
    assert refused.json()["error"] == "invalid_scope"


async def test_malformed_and_missing_scopes_are_invalid_scope(anonymous: httpx.AsyncClient,
                                                               clients: ClientsFile) -> None:
    client = clients.register("admin")
    for scope in ("", "system/Observation.sr", "patient/*.rs", "openid", "system/Observation.rs?category=x"):
        response = await request_token(anonymous, form(assertion(client), scope))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_scope"), scope


async def test_an_unknown_grant_is_unsupported_grant_type(anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("admin")
    response = await request_token(anonymous, form(assertion(client), grant_type="password"))
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


async def test_a_request_that_is_not_a_form_is_invalid_request(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/fhir/auth/token", json={"grant_type": "client_credentials"})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def _refused(anonymous: httpx.AsyncClient, client_assertion: str, **changes: str) -> str:
    response = await request_token(anonymous, form(client_assertion, **changes))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client", response.text
    return str(response.json()["error_description"])


async def test_a_replayed_assertion_is_invalid_client(anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("admin")
    once = assertion(client)
    assert (await request_token(anonymous, form(once))).status_code == 200
    assert "used before" in await _refused(anonymous, once)


async def test_assertions_with_wrong_claims_are_invalid_client(anonymous: httpx.AsyncClient,
                                                              clients: ClientsFile) -> None:
    client = clients.register("admin")
    now = int(time.time())
    for changes in ({"aud": "http://testserver/fhir"}, {"aud": "https://elsewhere.example/token"},
                    {"sub": "someone-else"}, {"jti": None}, {"exp": None}):
        await _refused(anonymous, assertion(client, **changes))
    assert "expired" in await _refused(anonymous, assertion(client, issued_at=now - 600))
    assert "ahead" in await _refused(anonymous, assertion(client, lifetime=3600))  # more than 5 minutes ahead
    assert "future" in await _refused(anonymous, assertion(client, iat=now + 120, exp=now + 240))


async def test_unknown_clients_and_keys_are_invalid_client(anonymous: httpx.AsyncClient,
                                                           clients: ClientsFile) -> None:
    client = clients.register("admin")
    stranger = new_key()
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": TOKEN_URL, "exp": int(time.time()) + 60,
              "jti": "x1"}
    signed_by_stranger = jwt.encode({"alg": "ES384", "kid": stranger.kid}, claims, stranger, algorithms=["ES384"])
    assert "no key" in await _refused(anonymous, signed_by_stranger)
    # the client's kid, a stranger's signature
    forged = jwt.encode({"alg": "ES384", "kid": client.key.kid}, claims, stranger, algorithms=["ES384"])
    assert "signature" in await _refused(anonymous, forged)
    nobody = {**claims, "iss": "nobody", "sub": "nobody"}
    assert "unknown client" in await _refused(
        anonymous, jwt.encode({"alg": "ES384", "kid": stranger.kid}, nobody, stranger, algorithms=["ES384"]))


async def test_alg_none_and_hmac_assertions_are_invalid_client(anonymous: httpx.AsyncClient,
                                                               clients: ClientsFile) -> None:
    client = clients.register("admin")
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": TOKEN_URL, "exp": int(time.time()) + 60,
              "jti": "n1"}
    assert "alg" in await _refused(anonymous, unsigned({"alg": "none", "kid": client.key.kid}, claims))
    # HMAC keyed with the client's public key (the classic confusion attack), and with any secret
    public = str(client.key.as_dict(private=False))
    for secret in (public.encode(), b"0" * 32):
        hmac = jwt.encode({"alg": "HS256", "kid": client.key.kid}, claims, OctKey.import_key(secret),
                          algorithms=["HS256"])
        assert "alg" in await _refused(anonymous, hmac)


async def test_an_rs384_client_key_is_accepted(anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"alg": "RS384"}, auto_kid=True)
    entries = clients.entries()
    entries.append({"client_id": "rsa-client", "role": "researcher", "jwks": {"keys": [rsa.as_dict(private=False)]}})
    clients.write(entries)
    claims = {"iss": "rsa-client", "sub": "rsa-client", "aud": TOKEN_URL, "exp": int(time.time()) + 60,
              "jti": "r1"}
    signed = jwt.encode({"alg": "RS384", "kid": rsa.kid}, claims, rsa, algorithms=["RS384"])
    response = await request_token(anonymous, form(signed))
    assert response.status_code == 200, response.text
