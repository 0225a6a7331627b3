"""``_list`` (https://hl7.org/fhir/R4/search.html#list): the resources a List refers to in ``entry.item``. The
semantics are golden rows (``tests/search/golden_search.py``); here what HTTP adds: the List is read through the
caller's access rules, and what is not served."""

from __future__ import annotations

import httpx

from fhir_server.context import Caller
from fhir_server.permissions import Role
from fhir_server.services import Services
from tests.conftest import client_as, parse, patient, post, unique


def _list_of(*references: str) -> dict:
    return {"resourceType": "List", "status": "current", "mode": "working",
            "entry": [{"item": {"reference": reference}} for reference in references]}


async def _ids(http: httpx.AsyncClient, query: dict) -> list[str]:
    response = await http.get("/fhir/Patient", params=query)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in parse(response).get("entry", []) if e["search"]["mode"] == "match")


async def test_list_of_another_center_finds_nothing(services: Services) -> None:
    async with client_as(services, Caller("ehr-list-a", Role.EHR, center="LIST-A")) as center_a:
        mine = parse(await post(center_a, "Patient", patient(unique())))["id"]
        listed = parse(await post(center_a, "List", _list_of(f"Patient/{mine}")))["id"]
        assert await _ids(center_a, {"_list": listed}) == [mine]
    async with client_as(services, Caller("ehr-list-b", Role.EHR, center="LIST-B")) as center_b:
        assert await _ids(center_b, {"_list": listed}) == []


async def test_list_naming_a_functional_list_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Patient", params={"_list": "$current-problems"})
    assert response.status_code == 400
    assert parse(response)["issue"][0]["code"] == "not-supported"


async def test_list_in_a_system_search_is_refused_under_strict_handling(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir", params={"_list": "l1", "_type": "Patient"},
                                headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "_list" in parse(response)["issue"][0]["diagnostics"]
