"""The public base URL behind reverse proxies: ``Forwarded`` (RFC 7239) and ``X-Forwarded-Proto/Host/Prefix``
are honoured for ``Location``, ``fullUrl`` and links only when the peer is a trusted proxy
(``FHIR_TRUSTED_PROXIES``; none by default). httpx's ASGI transport connects from 127.0.0.1."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from pydantic import ValidationError

from fhir_server.api.app import create_app
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON, parse, patient, post, unique


@pytest.fixture
def behind_proxies(services: Services) -> httpx.AsyncClient:
    return _client_trusting(services, "127.0.0.1, 10.0.0.0/8")


def _client_trusting(services: Services, proxies: str) -> httpx.AsyncClient:
    settings = services.settings.model_copy(update={"trusted_proxies": proxies})
    app = create_app(settings, dataclasses.replace(services, settings=settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                             headers={"Accept": FHIR_JSON})


async def _location(client: httpx.AsyncClient, **headers: str) -> str:
    response = await post(client, "Patient", patient(unique("FWD-")), **headers)
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(client: httpx.AsyncClient) -> None:
    location = await _location(client, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                                          "Forwarded": "proto=https;host=evil.example"})
    assert location.startswith("http://testserver/fhir/Patient/")


async def test_a_peer_outside_the_trusted_networks_is_not_believed(services: Services) -> None:
    async with _client_trusting(services, "10.0.0.0/8") as client:
        location = await _location(client, **{"X-Forwarded-Host": "evil.example"})
    assert location.startswith("http://testserver/fhir/Patient/")


async def test_x_forwarded_proto_host_and_prefix_from_a_trusted_proxy_make_the_base(
        behind_proxies: httpx.AsyncClient) -> None:
    async with behind_proxies as client:
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example",
                   "X-Forwarded-Prefix": "/cml"}
        location = await _location(client, **headers)
        assert location.startswith("https://registry.example/cml/fhir/Patient/")
        found = parse(await client.get("/fhir/Patient?_count=1", headers=headers))
    assert found["link"][0]["url"].startswith("https://registry.example/cml/fhir/Patient?")
    assert found["entry"][0]["fullUrl"].startswith("https://registry.example/cml/fhir/Patient/")


async def test_forwarded_wins_and_its_first_trusted_hop_names_the_public_host(
        behind_proxies: httpx.AsyncClient) -> None:
    async with behind_proxies as client:
        chain = "for=198.51.100.7;proto=https;host=registry.example, for=10.1.2.3;proto=http;host=inner:8080"
        location = await _location(client, Forwarded=chain, **{"X-Forwarded-Host": "other.example"})
    assert location.startswith("https://registry.example/fhir/Patient/")


async def test_a_forwarded_chain_through_an_untrusted_hop_stops_there(services: Services) -> None:
    async with _client_trusting(services, "127.0.0.1") as client:
        chain = "for=198.51.100.7;proto=https;host=registry.example, for=10.1.2.3;proto=http;host=inner:8080"
        location = await _location(client, Forwarded=chain)
    assert location.startswith("http://inner:8080/fhir/Patient/")  # 10.1.2.3 is not trusted: its word counts


async def test_malformed_forwarded_values_are_ignored(behind_proxies: httpx.AsyncClient) -> None:
    async with behind_proxies as client:
        location = await _location(client, **{"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "a@b/c",
                                              "X-Forwarded-Prefix": "no-slash"})
    assert location.startswith("http://testserver/fhir/Patient/")


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert [str(n) for n in Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxy_networks] == [
        "10.0.0.0/8", "::1/128"]
    assert Settings().trusted_proxy_networks == ()
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="10.0.0.0/33")
