"""``_has`` read in the order of its ids (https://hl7.org/fhir/R4/search.html#has; ``search/semijoin.py``).

``Patient?_has:Observation:subject:value-concept=x`` in the default order is read from the index of the
Observations' value and subject order, a page and a budgeted total at a time, instead of collecting every
referenced id first. The answer must be the one the collected join gives (``_total=accurate`` still collects):
the same Patients, pages, totals and links, with several matching Observations per Patient, Observations of
other subjects, deleted Observations and Patients, other criteria beside the ``_has``, and the inner matches
narrowed by what the caller may read (an ``ehr`` caller's center).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from tests.conftest import _client, client_as
from tests.search_http.conftest import fresh, ids, link, search, store

REASONS = "http://example.org/reasons"
HAS = f"_has:Observation:subject:value-concept={REASONS}|toxicity"
PATIENTS = 40
DELETED_PATIENT = 38
CENTERS = ("hs-A", "hs-B")


def reason(code: str) -> dict[str, Any]:
    return {"coding": [{"system": REASONS, "code": code}]}


def observation(ident: str, subject: str | None, code: str = "toxicity") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": ident, "status": "final",
                                "code": {"text": "registration reason"}, "valueCodeableConcept": reason(code)}
    if subject:
        resource["subject"] = {"reference": subject}
    return resource


def has_toxicity(n: int) -> bool:
    return n % 3 != 0


def center_of(n: int) -> str:
    """The center the Observations of patient ``n`` are stored with (set directly in the fixture)."""
    return CENTERS[n % 2]


def expected(keep: Callable[[int], bool] = lambda n: True) -> list[str]:
    return sorted(f"hs-p{n:02}" for n in range(PATIENTS) if has_toxicity(n) and n != DELETED_PATIENT and keep(n))


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services, search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    await store(http, {"resourceType": "Group", "id": "hs-g", "type": "person", "actual": True})
    for n in range(PATIENTS):
        await store(http, {"resourceType": "Patient", "id": f"hs-p{n:02}",
                           "gender": "female" if n % 2 else "male"})
        if has_toxicity(n):
            await store(http, observation(f"hs-o{n:02}a", f"Patient/hs-p{n:02}"))
            if n % 5 == 0:  # several matching Observations of one Patient
                await store(http, observation(f"hs-o{n:02}b", f"Patient/hs-p{n:02}"))
        else:
            await store(http, observation(f"hs-o{n:02}c", f"Patient/hs-p{n:02}", code="other"))
    await store(http, observation("hs-o-group", "Group/hs-g"), observation("hs-o-none", None),
                observation("hs-o-deleted", "Patient/hs-p00"))
    assert (await http.delete("/fhir/Observation/hs-o-deleted")).status_code in (200, 204)
    assert (await http.delete(f"/fhir/Patient/hs-p{DELETED_PATIENT}")).status_code in (200, 204)
    # the Patients shared by every center, each Patient's Observations of one center: an ``ehr`` caller sees every
    # Patient, and the ``_has`` must match through its own center's Observations only
    await search_db["Patient"].update_many({}, {"$set": {"center": None}})
    for n in range(PATIENTS):
        await search_db["Observation"].update_many({"sp.subject.r": f"Patient/hs-p{n:02}"},
                                                   {"$set": {"center": center_of(n)}})
    return http


@pytest.fixture(scope="module")
async def budget_3(data: httpx.AsyncClient, search_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    changed = dataclasses.replace(search_services,
                                  settings=search_services.settings.model_copy(update={"total_budget": 3}))
    async with _client(changed) as client:
        yield client


async def every_page(client: httpx.AsyncClient, query: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The ids of every page, following the next links; and the pages."""
    pages = [await search(client, "Patient", query)]
    while (url := link(pages[-1], "next")) is not None:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        pages.append(r.json())
    return [i for page in pages for i in ids(page)], pages


@pytest.mark.parametrize("count", [1, 4, 50])
async def test_has_pages_hold_every_referenced_patient_once_in_id_order(data: httpx.AsyncClient,
                                                                      count: int) -> None:
    found, pages = await every_page(data, f"{HAS}&_count={count}")
    assert found == expected()
    assert all(page["total"] == len(expected()) for page in pages)  # within the budget: on every page
    collected, _ = await every_page(data, f"{HAS}&_count={count}&_total=accurate")
    assert collected == found


async def test_has_beside_other_criteria(data: httpx.AsyncClient) -> None:
    found, pages = await every_page(data, f"gender=female&{HAS}&_count=3")
    assert found == expected(lambda n: n % 2 == 1)
    assert pages[0]["total"] == len(found)


async def test_has_previous_page_is_the_page_before(data: httpx.AsyncClient) -> None:
    first = await search(data, "Patient", f"{HAS}&_count=4")
    second = (await data.get(link(first, "next") or "")).json()
    third = (await data.get(link(second, "next") or "")).json()
    back = (await data.get(link(third, "previous") or "")).json()
    assert ids(back) == ids(second) == expected()[4:8]


async def test_has_total_above_the_budget_is_omitted_and_within_given(budget_3: httpx.AsyncClient) -> None:
    first = await search(budget_3, "Patient", f"{HAS}&_count=2")
    assert "total" not in first and ids(first) == expected()[:2]
    within = await search(budget_3, "Patient", f"_id=hs-p01,hs-p02,hs-p03,hs-p04&{HAS}&_count=1")
    assert within["total"] == 3  # hs-p03 has no toxicity
    assert "total" not in await search(budget_3, "Patient", f"{HAS}&_count=2&_total=none")


async def test_has_first_page_reads_only_the_observations_it_needs(budget_3: httpx.AsyncClient,
                                                                   search_services: Services,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Observations per read: the stream's row lists one item per Observation; the collected join's row lists the
    # ids of every matching Observation's Patient (one Observation each here, most of them)
    read: list[int] = []
    aggregate = search_services.store.aggregate

    async def counting(ctx: Any, collection: str, pipeline: Any, **kwargs: Any) -> list[dict[str, Any]]:
        rows = await aggregate(ctx, collection, pipeline, **kwargs)
        if collection == "Observation":
            read.append(sum(len(row.get("items", row.get("ids", []))) for row in rows))
        return rows

    monkeypatch.setattr(search_services.store, "aggregate", counting)
    bundle = await search(budget_3, "Patient", f"{HAS}&_count=2")
    assert ids(bundle) == expected()[:2]
    matching = sum(1 for n in range(PATIENTS) if has_toxicity(n)) + 2  # + the Group's, the subject-less one
    assert read and sum(read) < matching / 2  # the page (3 Patients) and the budget (4), not every match


@pytest.mark.parametrize("center", CENTERS)
async def test_has_sees_only_the_observations_the_caller_may_read(data: httpx.AsyncClient,
                                                                  search_services: Services, center: str) -> None:
    async with client_as(search_services, Caller(id=f"ehr-{center}", role=Role.EHR, center=center)) as http:
        found, pages = await every_page(http, f"{HAS}&_count=5")
        collected, _ = await every_page(http, f"{HAS}&_count=5&_total=accurate")
    assert found == collected == expected(lambda n: center_of(n) == center)
    assert pages[0]["total"] == len(found)
