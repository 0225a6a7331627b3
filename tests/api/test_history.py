"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import httpx

from tests.conftest import parse, patient, post, put, unique


async def _three_versions(client: httpx.AsyncClient) -> dict:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    await client.delete(f"/fhir/Patient/{created['id']}")
    return created


async def test_instance_history_lists_versions_newest_first(client: httpx.AsyncClient) -> None:
    created = await _three_versions(client)
    bundle = parse(await client.get(f"/fhir/Patient/{created['id']}/_history"))
    assert bundle["type"] == "history"
    methods = [e["request"]["method"] for e in bundle["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["resource"]["gender"] == "male"


async def test_instance_history_of_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/fhir/Patient/nope-nope/_history")).status_code == 404


async def test_history_count_pages_with_next_link(client: httpx.AsyncClient) -> None:
    created = await _three_versions(client)
    first = parse(await client.get(f"/fhir/Patient/{created['id']}/_history?_count=2"))
    assert len(first["entry"]) == 2
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = parse(await client.get(next_url.replace("http://testserver", "")))
    assert [e["response"]["etag"] for e in second["entry"]] == ['W/"1"']
    assert not any(link["relation"] == "next" for link in second["link"])


async def test_paging_is_stable_while_new_versions_arrive(client: httpx.AsyncClient) -> None:
    created = await _three_versions(client)
    first = parse(await client.get(f"/fhir/Patient/{created['id']}/_history?_count=1"))
    await put(client, f"Patient/{created['id']}", created)  # a 4th version arrives between pages
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = parse(await client.get(next_url.replace("http://testserver", "")))
    assert [e["response"]["etag"] for e in second["entry"]] == ['W/"2"']


async def test_type_history_contains_only_that_type(client: httpx.AsyncClient) -> None:
    await _three_versions(client)
    bundle = parse(await client.get("/fhir/Patient/_history?_count=50"))
    assert bundle["entry"]
    assert all(e["fullUrl"].split("/")[-2] == "Patient" for e in bundle["entry"])


async def test_system_history_includes_several_types(client: httpx.AsyncClient) -> None:
    await post(client, "Organization", {"resourceType": "Organization", "name": unique()})
    await post(client, "Patient", patient(unique()))
    bundle = parse(await client.get("/fhir/_history?_count=2"))
    types = {e["fullUrl"].split("/")[-2] for e in bundle["entry"]}
    assert types == {"Organization", "Patient"}


async def test_history_since_excludes_older_versions(client: httpx.AsyncClient) -> None:
    created = await _three_versions(client)
    all_versions = parse(await client.get(f"/fhir/Patient/{created['id']}/_history"))["entry"]
    newest = all_versions[0]["response"]["lastModified"]
    since = parse(await client.get(f"/fhir/Patient/{created['id']}/_history", params={"_since": newest}))
    assert [e["response"]["etag"] for e in since["entry"]] == ['W/"3"']


async def test_history_since_invalid_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/_history?_since=yesterday")
    assert r.status_code == 400
    assert parse(r)["issue"][0]["expression"] == ["_since"]
