"""Content codings (RFC 9110 8.4, 12.5.3): responses in gzip to clients that accept it, request bodies sent in
gzip inflated (within ``FHIR_MAX_BODY_BYTES``, counted inflated), any other coding a 415."""

from __future__ import annotations

import gzip

import httpx

from fhir_server.api.app import create_app
from fhir_server.services import Services
from tests.conftest import FHIR_JSON, body, parse, patient, unique


async def test_a_large_response_is_gzip_for_a_client_that_accepts_it(client: httpx.AsyncClient) -> None:
    compressed = await client.get("/fhir/metadata", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in compressed.headers["vary"]
    plain = await client.get("/fhir/metadata", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert parse(compressed) == parse(plain)  # httpx inflates it: the same CapabilityStatement
    assert int(compressed.headers["content-length"]) * 5 < int(plain.headers["content-length"])


async def test_gzip_level_zero_never_compresses(services: Services) -> None:
    app = create_app(services.settings.model_copy(update={"gzip_level": 0}), services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as plain:
        r = await plain.get("/fhir/metadata", headers={"Accept-Encoding": "gzip", "Accept": FHIR_JSON})
        assert r.status_code == 200
        assert "content-encoding" not in r.headers


async def test_a_gzip_request_body_is_inflated(client: httpx.AsyncClient) -> None:
    sent = patient(unique("gz-"))
    r = await client.post("/fhir/Patient", content=gzip.compress(body(sent)),
                          headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 201, r.text
    assert parse(r)["identifier"] == sent["identifier"]


async def test_a_gzip_body_that_inflates_beyond_the_limit_is_413(client: httpx.AsyncClient,
                                                                  services: Services) -> None:
    """A few kilobytes that would inflate to more than FHIR_MAX_BODY_BYTES are refused as they inflate."""
    limit = services.settings.max_body_bytes
    bomb = gzip.compress(b'{"resourceType": "Patient", "id": "' + b"a" * (limit + 1) + b'"}')
    assert len(bomb) < limit // 100
    r = await client.post("/fhir/Patient", content=bomb,
                          headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "inflated" in parse(r)["issue"][0]["diagnostics"]


async def test_an_unknown_content_coding_is_415_naming_gzip(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=body(patient()),
                          headers={"Content-Type": FHIR_JSON, "Content-Encoding": "br"})
    assert r.status_code == 415
    assert r.headers["accept-encoding"] == "gzip"


async def test_a_corrupt_or_truncated_gzip_body_is_400(client: httpx.AsyncClient) -> None:
    whole = gzip.compress(body(patient()))
    for sent in (b"not gzip at all", whole[: len(whole) // 2], whole + b"trailing"):
        r = await client.post("/fhir/Patient", content=sent,
                              headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
        assert r.status_code == 400, sent
        assert parse(r)["issue"][0]["code"] == "structure"
