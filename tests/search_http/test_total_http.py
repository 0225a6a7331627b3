"""``Bundle.total`` without ``_total`` (https://hl7.org/fhir/R4/search.html#total, bundle.html#Bundle.total):
searchset and history Bundles carry the total of the whole search on every page when counting it stays within
``total_budget`` (``FHIR_TOTAL_BUDGET``); above it the total is omitted unless ``_total=accurate`` asks.

The budget is tiny here (3) on a second server sharing the database, so "above the budget" is five resources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from tests.conftest import _client, parse
from tests.search_http.conftest import fresh, link, search, store

PATIENTS = [{"resourceType": "Patient", "id": f"tp{n}", "gender": "female", "birthDate": f"198{n}-01-01"}
            for n in range(5)]
ORGANIZATIONS = [{"resourceType": "Organization", "id": f"to{n}", "name": f"Centre {n}"} for n in range(2)]


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services, search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    await store(http, *PATIENTS, *ORGANIZATIONS)
    await store(http, {**PATIENTS[0], "gender": "other"})  # a second version of tp0: 6 Patient versions
    return http


async def _server(services: Services, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Another server on the same services and database, with other settings."""
    changed = dataclasses.replace(services, settings=services.settings.model_copy(update=settings))
    async with _client(changed) as client:
        yield client


@pytest.fixture(scope="module")
async def budget_3(data: httpx.AsyncClient, search_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _server(search_services, total_budget=3):
        yield client


@pytest.fixture(scope="module")
async def no_budget(data: httpx.AsyncClient, search_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _server(search_services, total_budget=0):
        yield client


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


async def next_page(client: httpx.AsyncClient, bundle: dict[str, Any]) -> dict[str, Any]:
    url = link(bundle, "next")
    assert url is not None, bundle["link"]
    return await get(client, url)


# -- searchset -----------------------------------------------------------------------------------------------

async def test_total_of_a_small_result_is_given_on_the_first_and_a_later_page(data: httpx.AsyncClient) -> None:
    first = await search(data, "Patient", "_count=2")
    assert first["total"] == 5 and len(first["entry"]) == 2
    second = await next_page(data, first)
    assert second["total"] == 5  # the total of the search, not of the page
    assert (await next_page(data, second))["total"] == 5


async def test_total_above_the_budget_is_omitted_on_every_page(budget_3: httpx.AsyncClient) -> None:
    first = await search(budget_3, "Patient", "_count=2")
    assert "total" not in first and len(first["entry"]) == 2
    assert "total" not in await next_page(budget_3, first)


async def test_total_within_the_budget_is_given(budget_3: httpx.AsyncClient) -> None:
    first = await search(budget_3, "Patient", "birthdate=ge1982&_count=2")  # tp2, tp3, tp4
    assert first["total"] == 3
    assert (await next_page(budget_3, first))["total"] == 3


async def test_total_accurate_counts_above_the_budget(budget_3: httpx.AsyncClient) -> None:
    first = await search(budget_3, "Patient", "_count=2&_total=accurate")
    assert first["total"] == 5
    assert (await next_page(budget_3, first))["total"] == 5


async def test_total_none_omits_the_total_within_the_budget(data: httpx.AsyncClient) -> None:
    first = await search(data, "Patient", "_count=2&_total=none")
    assert "total" not in first
    assert "total" not in await next_page(data, first)
    assert "total" not in await search(data, "Patient", "_total=none")  # even when the page holds everything


async def test_a_first_page_holding_everything_has_its_total_above_the_budget(budget_3: httpx.AsyncClient) -> None:
    assert (await search(budget_3, "Patient"))["total"] == 5


async def test_system_search_total_is_the_exact_sum_within_the_budget(budget_3: httpx.AsyncClient) -> None:
    # each type is counted with the budget: 2 Patients + 1 Organization = 3 is given...
    within = await search(budget_3, "", "_type=Patient,Organization&_id=tp0,tp1,to0&_count=1")
    assert within["total"] == 3
    # ...2 + 2 = 4 is not, although neither type alone is above the budget
    above = await search(budget_3, "", "_type=Patient,Organization&_id=tp0,tp1,to0,to1&_count=1")
    assert "total" not in above
    assert (await search(budget_3, "", "_type=Patient,Organization&_count=1&_total=accurate"))["total"] == 7


async def test_budget_zero_counts_only_when_asked(no_budget: httpx.AsyncClient) -> None:
    assert "total" not in await search(no_budget, "Patient", "_count=2")
    assert (await search(no_budget, "Patient"))["total"] == 5  # the first page holds everything: free
    assert (await search(no_budget, "Patient", "_count=2&_total=accurate"))["total"] == 5


# -- history -------------------------------------------------------------------------------------------------

async def test_history_total_is_given_on_every_page(data: httpx.AsyncClient) -> None:
    first = await get(data, "/fhir/Patient/_history?_count=2")
    assert first["total"] == 6 and len(first["entry"]) == 2
    assert (await next_page(data, first))["total"] == 6
    instance = await get(data, "/fhir/Patient/tp0/_history?_count=1")
    assert instance["total"] == 2
    assert (await next_page(data, instance))["total"] == 2


async def test_history_total_above_the_budget_is_omitted(budget_3: httpx.AsyncClient) -> None:
    first = await get(budget_3, "/fhir/Patient/_history?_count=2")
    assert "total" not in first
    assert "total" not in await next_page(budget_3, first)
    assert (await get(budget_3, "/fhir/Organization/_history?_count=1"))["total"] == 2
    assert (await get(budget_3, "/fhir/Patient/_history"))["total"] == 6  # one page holds everything


async def test_system_history_total_counts_every_type(data: httpx.AsyncClient) -> None:
    assert (await get(data, "/fhir/_history?_count=1"))["total"] == 8
