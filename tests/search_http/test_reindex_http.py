"""Runtime SearchParameters and ``$reindex`` over HTTP (https://hl7.org/fhir/R4/searchparameter.html,
asynchronous pattern https://hl7.org/fhir/R4/async.html).

A registry-specific number parameter, ``toxicity-grade`` (the CTCAE grade component of the registration
Observation), is created through the API: new writes are indexed with it at once, resources stored before
only after ``$reindex``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.interactions.reindex import write_index_values
from fhir_server.services import Services
from fhir_server.storage.documents import JOBS, now_ms
from fhir_server.storage.jobs import STALE_AFTER_SECONDS
from tests.conftest import body, parse, put
from tests.search_http.conftest import fresh, ids, search, store

B = "https://cml-registry.eu/fhir"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"
TOXICITY_GRADE: dict[str, Any] = {
    "resourceType": "SearchParameter", "id": "toxicity-grade", "url": f"{B}/SearchParameter/toxicity-grade",
    "name": "ToxicityGrade", "status": "active", "description": "CTCAE grade of the toxicity (1-5)",
    "code": "toxicity-grade", "base": ["Observation"], "type": "number",
    "expression": "Observation.component.where(code.coding.code = 'toxicity-grade').value.ofType(integer)",
}


def toxicity(ident: str, grade: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": CONCEPTS, "code": "registration-reason"}]},
            "component": [{"code": {"coding": [{"system": CONCEPTS, "code": "toxicity-grade"}]},
                           "valueInteger": grade}]}


async def run_reindex(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """POST ``path``, expect 202 + Content-Location, poll the status until 200; returns its parameters."""
    r = await client.post(path)
    assert r.status_code == 202, r.text
    location = r.headers["Content-Location"]
    assert "$reindex-status?job=" in location
    for _ in range(200):
        status = await client.get(location)
        if status.status_code == 200:
            return {p["name"]: p for p in parse(status)["parameter"] if p["name"] != "type"} | {
                "types": [p for p in parse(status)["parameter"] if p["name"] == "type"]}
        assert status.status_code == 202, status.text
        assert "X-Progress" in status.headers
        await asyncio.sleep(0.05)
    raise AssertionError("reindex did not finish")


async def grade(client: httpx.AsyncClient, value: str, **headers: str) -> list[str]:
    return sorted(ids(await search(client, "Observation", [("toxicity-grade", value)], **headers)))


@pytest.fixture
async def clean(http: httpx.AsyncClient, search_services: Services,
                search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    return http


async def test_a_search_parameter_created_through_the_api_indexes_new_writes_then_reindex_the_old(
        clean: httpx.AsyncClient, search_services: Services) -> None:
    await store(clean, toxicity("tox-1", 3), toxicity("tox-2", 4))
    strict = await clean.get("/fhir/Observation?toxicity-grade=3", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400

    await store(clean, TOXICITY_GRADE)
    assert search_services.search_parameters.get("Observation", "toxicity-grade") is not None
    await store(clean, toxicity("tox-3", 3))
    assert await grade(clean, "3", Prefer="handling=strict") == ["tox-3"]  # older ones are not indexed yet

    result = await run_reindex(clean, "/fhir/Observation/$reindex")
    assert result["status"]["valueCode"] == "completed"
    assert result["total"]["valueInteger"] == 3 and result["processed"]["valueInteger"] == 3
    assert result["updated"]["valueInteger"] == 2  # tox-3 already had its values
    assert await grade(clean, "3") == ["tox-1", "tox-3"]
    assert await grade(clean, "gt3") == ["tox-2"]

    read = parse(await clean.get("/fhir/Observation/tox-1"))
    assert read["meta"]["versionId"] == "1"  # reindexing makes no new version
    history = parse(await clean.get("/fhir/Observation/tox-1/_history"))
    assert len(history["entry"]) == 1


async def test_changing_and_deleting_a_search_parameter(clean: httpx.AsyncClient, search_services: Services,
                                                        search_db: AsyncDatabase) -> None:
    await store(clean, TOXICITY_GRADE, toxicity("tox-1", 3))
    assert await grade(clean, "3") == ["tox-1"]
    renamed = {**TOXICITY_GRADE, "code": "ctcae-grade"}
    await store(clean, renamed)
    await run_reindex(clean, "/fhir/$reindex?_type=Observation")
    assert sorted(ids(await search(clean, "Observation", [("ctcae-grade", "3")]))) == ["tox-1"]
    strict = await clean.get("/fhir/Observation?toxicity-grade=3", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400

    assert (await clean.delete("/fhir/SearchParameter/toxicity-grade")).status_code in (200, 204)
    assert search_services.search_parameters.get("Observation", "ctcae-grade") is None
    await run_reindex(clean, "/fhir/Observation/$reindex")
    doc = await search_db["Observation"].find_one({"_id": "tox-1"})
    assert doc is not None and "ctcae-grade" not in doc["sp"]


async def test_system_reindex_reports_progress_per_type(clean: httpx.AsyncClient) -> None:
    await store(clean, toxicity("tox-1", 2), {"resourceType": "Patient", "id": "p1", "gender": "male"})
    result = await run_reindex(clean, "/fhir/$reindex")
    per_type = {part["part"][0]["valueCode"]: {p["name"]: p.get("valueInteger") for p in part["part"][1:]}
                for part in result["types"]}
    assert per_type["Observation"]["total"] == 1 and per_type["Patient"]["processed"] == 1
    assert result["updated"]["valueInteger"] == 0  # nothing changed: nothing written
    assert "finished" in result


async def test_reindex_progress_is_kept_in_mongodb(clean: httpx.AsyncClient, search_db: AsyncDatabase) -> None:
    await store(clean, toxicity("tox-1", 2))
    await run_reindex(clean, "/fhir/Observation/$reindex")
    job = await search_db[JOBS].find_one({"types": ["Observation"]})
    assert job is not None and job["status"] == "completed" and job["processed"] == 1


async def test_reindex_never_overwrites_a_newer_version(clean: httpx.AsyncClient, search_services: Services,
                                                        search_db: AsyncDatabase) -> None:
    """The write is conditional on the version read: a resource updated in between keeps the values its own
    writer extracted."""
    await store(clean, TOXICITY_GRADE, toxicity("tox-1", 3))
    stale = await search_db["Observation"].find_one({"_id": "tox-1"})
    assert stale is not None and stale["vid"] == 1
    r = await put(clean, "Observation/tox-1", toxicity("tox-1", 5))
    assert r.status_code == 200
    written = await write_index_values(search_services, "Observation", [("tox-1", 1, stale["sp"])])
    assert written == 0
    assert await grade(clean, "5") == ["tox-1"] and await grade(clean, "3") == []


async def test_reindex_status_errors(clean: httpx.AsyncClient) -> None:
    assert (await clean.get("/fhir/$reindex-status?job=nope")).status_code == 404
    assert (await clean.get("/fhir/$reindex-status")).status_code == 400
    assert (await clean.get("/fhir/$reindex")).status_code == 405
    assert (await clean.post("/fhir/$reindex?_type=Nonsense")).status_code == 404


@pytest.mark.parametrize("change", [
    {"expression": "Observation.component.where("},
    {"type": "fuzzy"},
    {"code": None},
])
async def test_an_unusable_search_parameter_is_refused_and_not_stored(clean: httpx.AsyncClient,
                                                                     change: dict[str, Any]) -> None:
    resource = {k: v for k, v in {**TOXICITY_GRADE, **change}.items() if v is not None}
    r = await put(clean, "SearchParameter/toxicity-grade", resource)
    assert r.status_code in (400, 422), r.text
    assert (await clean.get("/fhir/SearchParameter/toxicity-grade")).status_code == 404
    await store(clean, toxicity("tox-1", 3))  # writes go on with the parameters in force


async def test_a_search_parameter_in_a_transaction_bundle_takes_effect_for_the_same_bundle_after_commit(
        clean: httpx.AsyncClient) -> None:
    """Bundles call ``after_commit`` too: the next write is indexed with the new parameter."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": TOXICITY_GRADE, "request": {"method": "PUT", "url": "SearchParameter/toxicity-grade"}}]}
    r = await clean.post("/fhir", content=body(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    await store(clean, toxicity("tox-9", 2))
    assert await grade(clean, "2", Prefer="handling=strict") == ["tox-9"]


async def test_a_reindex_whose_process_died_is_resumed_where_it_stopped(
        clean: httpx.AsyncClient, search_services: Services, search_db: AsyncDatabase) -> None:
    """A job another process was running, with tox-1 done when that process died: while its heartbeat is fresh
    it is left alone; once stale, the status request takes it over and resumes after tox-1 (so tox-1, which the
    dead process recorded but this test never reindexed, keeps its old index values)."""
    await store(clean, toxicity("tox-1", 1), toxicity("tox-2", 2), toxicity("tox-3", 3), TOXICITY_GRADE)
    counts = {"total": 3, "processed": 1, "updated": 1, "skipped": 0}
    job_id = "dead" + "0" * 28
    await search_services.store.jobs("reindex").insert({
        "_id": job_id, "owner": "elsewhere:1:dead", "types": ["Observation"], "byType": {"Observation": counts},
        **counts, "started": now_ms(), "finished": None, "error": None, "expires": now_ms() + timedelta(days=1),
        "resume": {"type": "Observation", "after": "tox-1", "done": False}, "caller": "system", "role": "system",
        "center": None, "scopes": ["system/*.*"], "baseUrl": "http://testserver/fhir"})
    location = f"/fhir/$reindex-status?job={job_id}"
    assert (await clean.get(location)).status_code == 202
    assert (await search_db[JOBS].find_one({"_id": job_id}))["owner"] == "elsewhere:1:dead"

    stale = now_ms() - timedelta(seconds=STALE_AFTER_SECONDS + 1)
    await search_db[JOBS].update_one({"_id": job_id}, {"$set": {"heartbeat": stale}})
    for _ in range(200):
        status = await clean.get(location)
        if status.status_code != 202:
            break
        await asyncio.sleep(0.05)
    assert status.status_code == 200, status.text
    result = {p["name"]: p.get("valueInteger") for p in parse(status)["parameter"]}
    assert result["processed"] == 3 and result["updated"] == 3
    assert await grade(clean, "2") == ["tox-2"] and await grade(clean, "3") == ["tox-3"]
    assert await grade(clean, "1") == []
