"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

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


def _link(bundle: dict, relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


async def _etags(client: httpx.AsyncClient, url: str) -> tuple[list[str], dict]:
    bundle = parse(await client.get(url))
    return [e["response"]["etag"] for e in bundle.get("entry", [])], bundle


@pytest.mark.parametrize("level", ["instance", "type", "instance _at"])
async def test_history_pages_backwards_through_previous_links(client: httpx.AsyncClient, level: str) -> None:
    """http.html#paging: next and previous links; walking back from the last page shows every page again."""
    created = parse(await post(client, "Patient", patient(unique())))
    since = quote(created["meta"]["lastUpdated"])  # the type's history from here holds this test's versions only
    for gender in ("male", "female", "other", "unknown"):
        created = parse(await put(client, f"Patient/{created['id']}", {**created, "gender": gender}))
    url = {"instance": f"/fhir/Patient/{created['id']}/_history?_count=2",
           "type": f"/fhir/Patient/_history?_count=2&_since={since}",
           "instance _at": f"/fhir/Patient/{created['id']}/_history?_count=2&_at=ge2000"}[level]
    forward: list[list[str]] = []
    page: str | None = url
    while page is not None:
        etags, bundle = await _etags(client, page)
        forward.append(etags)
        assert (_link(bundle, "previous") is None) == (len(forward) == 1)
        assert (_link(bundle, "first") is None) == (len(forward) == 1)
        last, page = bundle, _link(bundle, "next")
    backward: list[list[str]] = []
    page = _link(last, "previous")
    while page is not None:
        etags, bundle = await _etags(client, page)
        backward.append(etags)
        assert _link(bundle, "next") is not None
        page = _link(bundle, "previous")
    assert [*reversed(backward), forward[-1]] == forward
    assert forward == [['W/"5"', 'W/"4"'], ['W/"3"', 'W/"2"'], ['W/"1"']]


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


# _at (http.html#history): the versions that were current at some point of a period


async def _versions_in_time(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    """A Patient with three versions, and when each was stored (``meta.lastUpdated``, to the millisecond)."""
    created = parse(await post(client, "Patient", patient(unique())))
    second = parse(await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}))
    third = parse(await put(client, f"Patient/{created['id']}", {**second, "gender": "female"}))
    return created["id"], [v["meta"]["lastUpdated"] for v in (created, second, third)]


async def _versions_at(client: httpx.AsyncClient, url: str, *at: str, resource_id: str) -> list[str]:
    response = await client.get(url, params=[("_at", value) for value in at])
    assert response.status_code == 200, response.text
    return [e["resource"]["meta"]["versionId"] for e in parse(response).get("entry", [])
            if e.get("resource", {}).get("id") == resource_id]


async def test_history_at_an_instant_is_the_version_current_then(client: httpx.AsyncClient) -> None:
    pid, stored = await _versions_in_time(client)
    url = f"/fhir/Patient/{pid}/_history"
    assert await _versions_at(client, url, stored[0], resource_id=pid) == ["1"]
    # version 1 ends the millisecond version 2 begins: at that instant version 2 is current, not both
    assert await _versions_at(client, url, stored[1], resource_id=pid) == ["2"]
    assert await _versions_at(client, url, stored[2], resource_id=pid) == ["3"]


async def test_history_at_a_period_lists_every_version_current_in_it(client: httpx.AsyncClient) -> None:
    pid, stored = await _versions_in_time(client)
    url = f"/fhir/Patient/{pid}/_history"
    assert await _versions_at(client, url, f"ge{stored[1]}", resource_id=pid) == ["3", "2"]
    assert await _versions_at(client, url, f"lt{stored[1]}", resource_id=pid) == ["1"]
    assert await _versions_at(client, url, f"le{stored[1]}", resource_id=pid) == ["2", "1"]
    assert await _versions_at(client, url, f"gt{stored[0]}", f"lt{stored[2]}", resource_id=pid) == ["2", "1"]
    assert await _versions_at(client, url, stored[0][:4], resource_id=pid) == ["3", "2", "1"]  # the year


async def test_history_at_a_period_after_the_last_change_is_the_current_version(client: httpx.AsyncClient) -> None:
    pid, _stored = await _versions_in_time(client)
    for url in (f"/fhir/Patient/{pid}/_history", "/fhir/Patient/_history?_count=1000"):
        assert await _versions_at(client, url, "ge2999-01-01", resource_id=pid) == ["3"], url
    assert await _versions_at(client, f"/fhir/Patient/{pid}/_history", "lt2000", resource_id=pid) == []


async def test_type_and_system_history_at_a_time_keep_their_resources_versions(client: httpx.AsyncClient) -> None:
    pid, stored = await _versions_in_time(client)
    for url in ("/fhir/Patient/_history?_count=1000", "/fhir/_history?_count=1000"):
        assert await _versions_at(client, url, stored[1], resource_id=pid) == ["2"], url
        assert await _versions_at(client, url, f"ge{stored[1]}", resource_id=pid) == ["3", "2"], url


async def test_history_at_pages_keep_the_period(client: httpx.AsyncClient) -> None:
    pid, stored = await _versions_in_time(client)
    first = parse(await client.get(f"/fhir/Patient/{pid}/_history", params={"_at": f"ge{stored[0]}", "_count": 2}))
    assert first["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in first["entry"]] == ["3", "2"]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "_at=ge" in following
    rest = parse(await client.get(following))
    assert [e["resource"]["meta"]["versionId"] for e in rest["entry"]] == ["1"]


async def test_history_at_that_is_no_date_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Patient/_history", params={"_at": "yesterday"})
    assert response.status_code == 400
    assert parse(response)["issue"][0]["expression"] == ["_at"]
