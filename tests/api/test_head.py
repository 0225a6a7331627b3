"""HEAD (RFC 9110 9.3.2): a read's status and header fields without its content. Only the reads that change
nothing have a HEAD: an operation (a GET ``$export`` starts a job) answers 405, with the Allow header a 405
carries (15.5.6)."""

from __future__ import annotations

import httpx

from tests.conftest import parse, patient, post, unique


async def test_head_of_a_read_is_its_get_without_the_content(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    got = await client.get(f"/fhir/Patient/{created['id']}")
    head = await client.head(f"/fhir/Patient/{created['id']}")
    assert head.status_code == 200 and head.content == b""
    for field in ("etag", "last-modified", "content-type", "content-length"):
        assert head.headers[field] == got.headers[field], field
    assert int(head.headers["content-length"]) == len(got.content)


async def test_head_with_the_current_etag_is_304(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    head = await client.head(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert head.status_code == 304 and head.content == b""


async def test_head_of_an_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.head(f"/fhir/Patient/{unique('none-')}")).status_code == 404


async def test_head_of_a_search_and_of_a_history_are_their_gets_without_content(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    for url in (f"/fhir/Patient?_id={created['id']}", f"/fhir/Patient/{created['id']}/_history", "/fhir/metadata"):
        got, head = await client.get(url), await client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], url


async def test_head_of_an_operation_is_405(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    for url in ("/fhir/$export", f"/fhir/Patient/{created['id']}/$everything", "/fhir/Patient/$validate"):
        assert (await client.head(url)).status_code == 405, url


async def test_a_405_over_http_carries_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir/Patient/some-id", content=b"{}",
                                 headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH, PUT"


async def test_head_carries_the_gets_content_coding_and_its_coded_length(client: httpx.AsyncClient) -> None:
    gzip = {"Accept-Encoding": "gzip"}
    got, head = await client.get("/fhir/metadata", headers=gzip), await client.head("/fhir/metadata", headers=gzip)
    assert got.headers["content-encoding"] == head.headers["content-encoding"] == "gzip"
    assert head.headers["vary"] == got.headers["vary"] == "Accept-Encoding"
    assert head.headers["content-length"] == got.headers["content-length"] and head.content == b""
    identity = await client.head("/fhir/metadata", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert int(identity.headers["content-length"]) > int(head.headers["content-length"])


async def test_head_of_an_error_has_the_gets_length_and_no_content(client: httpx.AsyncClient) -> None:
    url = f"/fhir/Patient/{unique('none-')}"
    got, head = await client.get(url), await client.head(url)
    assert head.status_code == got.status_code == 404 and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
