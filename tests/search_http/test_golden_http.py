"""The golden search table (``tests/search/golden_search.py``) over HTTP: load with PUT, query with GET.

After the PUTs, each document's ``lastUpdated`` is set to the table's value directly in MongoDB (the server
stamps "now"), so that the ``_lastUpdated`` cases keep their hand-derived answers.
"""

from __future__ import annotations

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from fhir_server.storage.documents import instant
from tests.search.golden_search import CASES, RESOURCES, Case
from tests.search_http.conftest import fresh, ids, search, store


@pytest.fixture(scope="module")
async def golden(http: httpx.AsyncClient, search_services: Services,
                 search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    for resource, last_updated in RESOURCES:
        await store(http, resource)
        await search_db[resource["resourceType"]].update_one(
            {"_id": resource["id"]},
            {"$set": {"lastUpdated": last_updated, "resource.meta.lastUpdated": instant(last_updated)}})
    return http


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_golden_case_over_http(golden: httpx.AsyncClient, case: Case) -> None:
    _name, resource_type, query, expected, ordered = case
    found = ids(await search(golden, resource_type, [*query, ("_count", "50")]))
    if ordered:
        assert found == expected
    else:
        assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("case", [c for c in CASES if c[4]], ids=[c[0] for c in CASES if c[4]])
async def test_golden_sorted_case_paged_two_by_two(golden: httpx.AsyncClient, case: Case) -> None:
    """The same order comes out when read two rows at a time through the next links."""
    _name, resource_type, query, expected, _ordered = case
    bundle = await search(golden, resource_type, [*query, ("_count", "2")])
    found = ids(bundle)
    while (nxt := next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)) is not None:
        r = await golden.get(nxt)
        assert r.status_code == 200, r.text
        bundle = r.json()
        found += ids(bundle)
    assert found == expected
