"""The defects issue #12 found by trying hard from outside, each reproduced over HTTP:

1. two conditional updates with the same criteria in one transaction (bundle.html#transaction: a resource is
   changed once per transaction; http.html#cond-update: the criteria name one resource);
2. ``meta.lastUpdated`` of a new version later than its predecessor's under concurrent updates, and history in
   the order of time whatever the ids (http.html#history: "sorted with oldest versions last").
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, post, unique

PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"


def _transaction(*entries: dict[str, Any]) -> bytes:
    return body({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)})


def _conditional_put(pseudonym: str, **extra: Any) -> dict[str, Any]:
    return {"resource": patient(pseudonym, **extra),
            "request": {"method": "PUT", "url": f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"}}


async def _matching(client: httpx.AsyncClient, pseudonym: str) -> int:
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}&_total=accurate"))
    return int(found["total"])


async def test_two_conditional_updates_creating_under_the_same_criteria_fail_the_transaction(
        client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    r = await client.post("/fhir", content=_transaction(_conditional_put(pseudonym),
                                                        _conditional_put(pseudonym, active=True)),
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400, r.text
    assert "only once" in r.text
    assert await _matching(client, pseudonym) == 0


async def test_conditional_create_and_conditional_update_of_the_same_new_resource_fail_the_transaction(
        client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    create = {"resource": patient(pseudonym), "request": {
        "method": "POST", "url": "Patient", "ifNoneExist": f"identifier={PATIENT_SYSTEM}|{pseudonym}"}}
    r = await client.post("/fhir", content=_transaction(create, _conditional_put(pseudonym, active=True)),
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400, r.text
    assert await _matching(client, pseudonym) == 0


async def test_conditional_update_after_a_conditional_create_that_matched_updates_that_resource(
        client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    existing = parse(await post(client, "Patient", patient(pseudonym)))
    create = {"resource": patient(pseudonym), "request": {
        "method": "POST", "url": "Patient", "ifNoneExist": f"identifier={PATIENT_SYSTEM}|{pseudonym}"}}
    r = await client.post("/fhir", content=_transaction(create, _conditional_put(pseudonym, active=True)),
                          headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    assert parse(await client.get(f"/fhir/Patient/{existing['id']}"))["active"] is True
    assert await _matching(client, pseudonym) == 1


def _last_updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


async def test_every_version_is_later_than_its_predecessor_under_an_update_storm(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    writers, rounds = 24, 4

    async def writer(n: int) -> list[int]:
        statuses = []
        for i in range(rounds):
            changed = {**created, "birthDate": f"{1800 + n * rounds + i}"}
            while True:  # a writer starved beyond the server's time budget gets a 503 and, like a client, retries
                r = await client.put(f"/fhir/Patient/{created['id']}", content=body(changed),
                                     headers={"Content-Type": FHIR_JSON})
                if r.status_code != 503:
                    break
            statuses.append(r.status_code)
        return statuses

    statuses = await asyncio.wait_for(asyncio.gather(*[writer(n) for n in range(writers)]), timeout=300)
    assert {s for run in statuses for s in run} == {200}
    history = parse(await client.get(f"/fhir/Patient/{created['id']}/_history?_count=100"))
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions == list(range(writers * rounds + 1, 0, -1))  # newest first, 10 after 9, none missing
    stamps = [_last_updated(e["resource"]) for e in history["entry"]]
    assert all(newer > older for newer, older in itertools.pairwise(stamps)), stamps


async def test_instance_history_orders_version_ten_before_version_nine(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    for i in range(10):
        r = await client.put(f"/fhir/Patient/{created['id']}", content=body({**created, "birthDate": f"19{70 + i}"}),
                             headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 200
    pages: list[str] = []
    url: str | None = f"/fhir/Patient/{created['id']}/_history?_count=3"
    while url:
        page = parse(await client.get(url))
        pages += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert pages == [str(v) for v in range(11, 0, -1)]
