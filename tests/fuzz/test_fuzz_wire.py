"""Property-based fuzzing of what arrives around a resource rather than in it: a Binary's native content
(binary.html#rest), a gzip request body (RFC 9110 8.4) and an ``X-Provenance`` header (http.html#custom).

Properties: no answer is a 5xx; native content comes back byte for byte in its media type; a body that is gzip
of a resource is that resource."""

from __future__ import annotations

import gzip

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import FHIR_JSON, body, parse
from tests.fuzz.checks import assert_not_server_error

MEDIA_TYPES = st.one_of(
    st.sampled_from(["application/pdf", "image/png", "text/plain; charset=utf-8", "application/json",
                     FHIR_JSON, "application/octet-stream", "text/html"]),
    st.from_regex(r"[a-z]{1,12}/[a-z0-9.+-]{1,24}", fullmatch=True),
)
# what an HTTP header can carry: visible Latin-1 and spaces, no line breaks
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=300)


@given(content=st.binary(max_size=4096), media_type=MEDIA_TYPES)
async def test_native_binary_content_comes_back_as_sent(client: httpx.AsyncClient, content: bytes,
                                                        media_type: str) -> None:
    created = await client.post("/fhir/Binary", content=content, headers={"Content-Type": media_type})
    assert_not_server_error(created)
    if created.status_code != 201:  # JSON and FHIR XML media types are parsed: malformed ones are the client's 400
        assert created.status_code == 400 and ("json" in media_type or "fhir" in media_type), created.text[:500]
        return
    read = await client.get(f"/fhir/Binary/{parse(created)['id']}", headers={"Accept": "*/*"})
    assert_not_server_error(read)
    if parse(created).get("data") is None and "json" in media_type:
        return  # a Binary resource sent as JSON: its own content, checked by the write fuzz tests
    assert read.content == content


@given(raw=st.binary(max_size=2048))
async def test_any_body_declared_gzip_is_never_a_server_error(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/fhir/Patient", content=raw,
                                 headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert_not_server_error(response)
    assert response.status_code in (201, 400, 413, 422), response.text[:500]


@given(family=st.text(max_size=40), level=st.integers(min_value=0, max_value=9))
async def test_a_gzip_body_is_the_resource_it_holds(client: httpx.AsyncClient, family: str, level: int) -> None:
    sent = {"resourceType": "Patient", "name": [{"family": family}]} if family.strip() else {"resourceType": "Patient"}
    response = await client.post("/fhir/Patient", content=gzip.compress(body(sent), compresslevel=level),
                                 headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert_not_server_error(response)
    if response.status_code == 201:
        assert parse(response).get("name") == sent.get("name")


@given(header=HEADER_TEXT)
async def test_any_x_provenance_header_is_never_a_server_error(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post("/fhir/Patient", content=body({"resourceType": "Patient"}),
                                 headers={"Content-Type": FHIR_JSON, "X-Provenance": header.encode("latin-1")})
    assert_not_server_error(response)
    assert response.status_code in (201, 400, 422), response.text[:500]
