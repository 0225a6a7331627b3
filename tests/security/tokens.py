"""Test helpers for a server that takes tokens (reuse them in any test that needs real callers):

- ``ClientsFile``: a clients file of the test's own; ``register(role, center=...)`` adds a client with a new key
  pair exactly as ``fhir-server client add`` does, and gives back its id and private key;
- ``token_for(http, client, scope)``: the real SMART Backend Services flow over HTTP (a signed assertion POSTed
  to the token endpoint), the access token;
- ``bearer_client(services, token)``: an httpx client of the app whose every request carries the token.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import Key

from fhir_server.api.app import create_app
from fhir_server.permissions import Role
from fhir_server.security.client import client_assertion, token_form
from fhir_server.security.registration import load_private_key, register_client
from fhir_server.services import Services

BASE = "http://testserver/fhir"
TOKEN_URL = f"{BASE}/auth/token"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    key: Key
    role: Role
    center: str | None = None


class ClientsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def register(self, role: Role | str, center: str | None = None, *, scope: str | None = None,
                 client_id: str | None = None) -> RegisteredClient:
        role = Role(role)
        client_id = client_id or f"{role.value}-{uuid.uuid4().hex[:8]}"
        key_file = register_client(self.path, client_id, role, center=center, scope=scope)
        return RegisteredClient(client_id, load_private_key(key_file), role, center)

    def entries(self) -> list[dict[str, Any]]:
        return list(json.loads(self.path.read_text())["clients"])

    def write(self, entries: list[dict[str, Any]]) -> None:
        self.path.write_text(json.dumps({"clients": entries}))


def app_client(services: Services, **headers: str) -> httpx.AsyncClient:
    """An httpx client of the app of ``services`` (its own settings: FHIR_AUTH_MODE=smart)."""
    transport = httpx.ASGITransport(app=create_app(services.settings, services))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers={"Accept": FHIR_JSON, **headers})


async def request_token(http: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    return await http.post("/fhir/auth/token", data=form)


async def token_for(http: httpx.AsyncClient, client: RegisteredClient, scope: str = "system/*.cruds") -> str:
    response = await request_token(http, token_form(client.key, client.client_id, TOKEN_URL, scope))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer_client(services: Services, token: str) -> httpx.AsyncClient:
    return app_client(services, Authorization=f"Bearer {token}")


def assertion(client: RegisteredClient, **changes: Any) -> str:
    """A client assertion of ``client``; ``changes`` override claims (``lifetime``, ``issued_at`` too)."""
    lifetime = changes.pop("lifetime", 240)
    issued_at = changes.pop("issued_at", None)
    if not changes:
        return client_assertion(client.key, client.client_id, TOKEN_URL, lifetime=lifetime, issued_at=issued_at)
    from joserfc import jwt

    base = json.loads(_segment(client_assertion(client.key, client.client_id, TOKEN_URL, lifetime=lifetime,
                                                issued_at=issued_at), 1))
    claims = {k: v for k, v in {**base, **changes}.items() if v is not None}
    return jwt.encode({"alg": "ES384", "kid": client.key.kid}, claims, client.key, algorithms=["ES384"])


def form(assertion_jwt: str, scope: str = "system/*.rs", **changes: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion_jwt, **changes}


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT as an attacker writes it by hand (``alg: none``, or any header): no library would sign it."""
    return ".".join(_b64(part) for part in (json.dumps(header).encode(), json.dumps(claims).encode(), signature))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
