"""How many MongoDB queries a search with ``_include`` costs (issue #14 item 4, bench/README.md "Search at scale").

``_include`` and ``_include:iterate`` resolve the references of a whole page with one ``$in`` query per
included type and round (``interactions/search.py``, ``_include_round``), never one query per reference: the
number of queries a page costs does not grow with the page. Counted at the store's one door to MongoDB
(``ResourceStore._collection``: every find, count and aggregation of a collection opens it once).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from tests.search_http.conftest import fresh, ids, search, store

CODE = "http://example.org/codes|include-test"
PATIENTS = 30
CLINICAL = ("Observation", "Patient", "Organization")


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services, search_db: AsyncDatabase,
               ) -> AsyncIterator[httpx.AsyncClient]:
    await fresh(search_services, search_db)
    await store(http, {"resourceType": "Organization", "id": "inc-org", "name": "Centre"})
    for n in range(PATIENTS):
        await store(http, {"resourceType": "Patient", "id": f"inc-p{n}",
                           "managingOrganization": {"reference": "Organization/inc-org"}},
                    {"resourceType": "Observation", "id": f"inc-o{n}", "status": "final",
                     "code": {"coding": [{"system": CODE.split("|")[0], "code": CODE.split("|")[1]}]},
                     "subject": {"reference": f"Patient/inc-p{n}"}})
    yield http


@pytest.fixture
def queries(search_services: Services, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The queries the store runs per collection of ``CLINICAL`` while the test runs."""
    seen: Counter[str] = Counter()
    opened: Callable[[str], Any] = search_services.store._collection

    def counting(name: str) -> Any:
        if name in CLINICAL:
            seen[name] += 1
        return opened(name)

    monkeypatch.setattr(search_services.store, "_collection", counting)
    return seen


@pytest.mark.parametrize("count", [5, 25])
async def test_include_page_costs_one_query_per_included_type_whatever_its_size(
        data: httpx.AsyncClient, queries: Counter[str], count: int) -> None:
    bundle = await search(data, "Observation", f"code={CODE}&_include=Observation:subject&_count={count}")
    assert len(ids(bundle)) == count
    assert len(ids(bundle, "include")) == count
    # the page and its budgeted total on Observation; every included Patient in one query
    assert queries == {"Observation": 2, "Patient": 1}


async def test_include_iterate_costs_one_query_per_round(data: httpx.AsyncClient, queries: Counter[str]) -> None:
    bundle = await search(data, "Observation", f"code={CODE}&_include=Observation:subject"
                                               "&_include:iterate=Patient:organization&_count=20&_total=none")
    assert len(ids(bundle, "include")) == 21  # 20 patients, their one organization once
    assert queries == {"Observation": 1, "Patient": 1, "Organization": 1}
