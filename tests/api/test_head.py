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


async def test_a_head_entry_of_a_batch_or_transaction_answers_without_content(client: httpx.AsyncClient) -> None:
    """Bundle.entry.request.method HEAD (bundle.html#transaction): the GET's status, location and etag, no
    resource and no outcome, as over HTTP."""
    created = parse(await post(client, "Patient", patient(unique())))
    got = await client.get(f"/fhir/Patient/{created['id']}")
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"request": {"method": "HEAD", "url": f"Patient/{created['id']}"}},
            {"request": {"method": "HEAD", "url": f"Patient?_id={created['id']}"}},
            {"request": {"method": "GET", "url": f"Patient/{created['id']}"}},
        ]}
        answer = parse(await client.post("/fhir", json=bundle))
        head, search, read = answer["entry"]
        assert head == {"response": {key: read["response"][key] for key in read["response"]}}, kind
        assert head["response"]["status"].startswith("200") and head["response"]["etag"] == got.headers["etag"]
        assert search == {"response": {"status": "200 OK"}}, kind
        assert read["resource"]["id"] == created["id"], kind


async def test_a_failed_head_entry_of_a_batch_has_its_status_and_no_outcome(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "HEAD", "url": f"Patient/{unique('none-')}"}},
        {"request": {"method": "HEAD", "url": "Patient/$everything"}},
    ]}
    answer = parse(await client.post("/fhir", json=bundle))
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["404", "405"]
    assert all(set(e) == {"response"} and "outcome" not in e["response"] for e in answer["entry"])
