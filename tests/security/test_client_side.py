"""The client side of the flow that ``fhir-server import-csv`` and the benchmarks use (``BackendServicesAuth``):
discovery, a token on the first request, renewed before it expires and after a 401; none asked of a server
that takes no tokens."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx

from fhir_server.api.app import create_app
from fhir_server.security.client import BackendServicesAuth
from fhir_server.services import Services
from tests.security.tokens import BASE, ClientsFile


def _client(services: Services, auth: httpx.Auth) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(services.settings, services))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", auth=auth)


async def test_a_token_is_fetched_once_used_and_renewed_before_it_expires(smart_services: Services,
                                                                          clients: ClientsFile) -> None:
    registered = clients.register("researcher")
    auth = BackendServicesAuth(BASE, registered.client_id, registered.key, "system/*.rs")
    async with _client(smart_services, auth) as http:
        assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
        first = auth._token
        assert first is not None
        assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
        assert auth._token is first
        auth._token = replace(first, expires_at=time.monotonic())  # about to expire
        assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
        assert auth._token is not None and auth._token.value != first.value


async def test_a_token_refused_with_401_is_renewed_once(smart_services: Services, clients: ClientsFile) -> None:
    registered = clients.register("researcher")
    auth = BackendServicesAuth(BASE, registered.client_id, registered.key, "system/*.rs")
    async with _client(smart_services, auth) as http:
        assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
        assert auth._token is not None
        auth._token = replace(auth._token, value="not-a-token")
        assert (await http.get("/fhir/Patient", params={"_count": "1"})).status_code == 200


async def test_a_server_without_tokens_is_called_without(services: Services, clients: ClientsFile) -> None:
    registered = clients.register("researcher")
    auth = BackendServicesAuth(BASE, registered.client_id, registered.key)
    async with _client(services, auth) as http:  # FHIR_AUTH_MODE=none: no discovery document
        response = await http.get("/fhir/Patient", params={"_count": "1"})
    assert response.status_code == 200 and "authorization" not in response.request.headers
