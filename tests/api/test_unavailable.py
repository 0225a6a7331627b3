"""Transient means 503 (issue #12; RFC 9110 15.6.4): a database that is unreachable or hung, or a write conflict
that outlasts the server's time budget (FHIR_TRANSACTION_TIMEOUT_SECONDS), is answered within that budget with
503, ``Retry-After`` and an OperationOutcome ``transient``; never a 500, never a hang. The server recovers without
a restart. Against a mongod of this module's own, stopped, paused and restarted here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import httpx
import pytest
from pymongo.errors import PyMongoError

from fhir_server.bootstrap import start_services
from fhir_server.services import Services
from fhir_server.settings import Settings
from fhir_server.storage.client import connect
from fhir_server.storage.mongod import LocalMongod, temporary_node
from tests.conftest import FHIR_JSON, _client, body, parse, patient, post, put, unique

BUDGET = 3.0  # the server's time budget here; a test fails on a hang at twice that, never on timing
PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"


@pytest.fixture(scope="module")
def own_mongod() -> Iterator[LocalMongod]:
    with temporary_node(cache_gb=0.25, prefix="ifp-fhir-faults-") as server:
        yield server


@pytest.fixture(scope="module")
async def faulty(own_mongod: LocalMongod, settings: Settings) -> AsyncIterator[Services]:
    svc = await start_services(settings.model_copy(update={
        "mongodb_uri": own_mongod.uri, "mongodb_db": unique("faults_"), "transaction_timeout_seconds": BUDGET}),
        own_mongod.uri)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture(scope="module")
async def http(faulty: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(faulty) as c:
        yield c


async def _answer(request: Awaitable[httpx.Response]) -> httpx.Response:
    """The response, failing the test if none comes within twice the budget (a hang)."""
    return await asyncio.wait_for(request, timeout=2 * BUDGET + 5)


def _assert_transient(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) > 0
    outcome = parse(r)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"


async def _recovered(http: httpx.AsyncClient, path: str) -> httpx.Response:
    """The first answer that is not a 503 (the driver reconnects in the background), within a bound."""
    for _ in range(60):
        r = await _answer(http.get(path))
        if r.status_code != 503:
            return r
        await asyncio.sleep(0.5)
    raise AssertionError(f"GET {path} still 503 after the database came back")


def _transaction(pseudonym: str) -> bytes:
    return body({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(pseudonym), "request": {
            "method": "POST", "url": "Patient", "ifNoneExist": f"identifier={PATIENT_SYSTEM}|{pseudonym}"}}]})


async def test_write_conflict_outlasting_the_budget_is_503_and_the_write_succeeds_after(
        http: httpx.AsyncClient, faulty: Services, own_mongod: LocalMongod) -> None:
    created = parse(await post(http, "Patient", patient(unique())))
    holder = connect(own_mongod.uri)
    try:
        async with holder.start_session() as session:
            await session.start_transaction()  # another writer's transaction, holding the resource's document
            await holder[faulty.settings.mongodb_db]["Patient"].update_one(
                {"_id": created["id"]}, {"$set": {"held": True}}, session=session)
            _assert_transient(await _answer(put(http, f"Patient/{created['id']}", {**created, "active": True})))
            await session.abort_transaction()
    finally:
        await holder.close()
    r = await put(http, f"Patient/{created['id']}", {**created, "active": True})
    assert r.status_code == 200, r.text


async def test_unreachable_database_is_503_and_the_server_recovers_without_restart(
        http: httpx.AsyncClient, own_mongod: LocalMongod) -> None:
    created = parse(await post(http, "Patient", patient(unique())))
    own_mongod.stop()
    try:
        _assert_transient(await _answer(http.get(f"/fhir/Patient/{created['id']}")))
        _assert_transient(await _answer(http.get("/fhir/Patient?gender=female")))
        _assert_transient(await _answer(post(http, "Patient", patient(unique()))))
        _assert_transient(await _answer(http.post("/fhir", content=_transaction(unique()),
                                                  headers={"Content-Type": FHIR_JSON})))
    finally:
        own_mongod.start()
    assert (await _recovered(http, f"/fhir/Patient/{created['id']}")).status_code == 200
    assert (await post(http, "Patient", patient(unique()))).status_code == 201


async def test_hung_database_is_503_within_the_budget_and_the_server_recovers(
        http: httpx.AsyncClient, own_mongod: LocalMongod) -> None:
    created: dict[str, Any] = parse(await post(http, "Patient", patient(unique())))
    own_mongod.pause()
    try:
        _assert_transient(await _answer(http.get(f"/fhir/Patient/{created['id']}")))
        _assert_transient(await _answer(http.post("/fhir", content=_transaction(unique()),
                                                  headers={"Content-Type": FHIR_JSON})))
    finally:
        own_mongod.resume()
    assert (await _recovered(http, f"/fhir/Patient/{created['id']}")).status_code == 200


async def test_primary_stepping_down_for_longer_than_the_budget_is_503_and_the_server_recovers(
        http: httpx.AsyncClient, own_mongod: LocalMongod) -> None:
    created = parse(await post(http, "Patient", patient(unique())))
    admin = connect(own_mongod.uri)
    try:
        # The only member steps down and may not stand for election for 3 x the budget: no primary meanwhile.
        with contextlib.suppress(PyMongoError):  # the step-down closes the connection that asked for it
            await admin.admin.command("replSetStepDown", int(3 * BUDGET), force=True)
        _assert_transient(await _answer(put(http, f"Patient/{created['id']}", {**created, "active": True})))
    finally:
        await admin.close()
    r = await _recovered(http, f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200
    for _ in range(60):  # reads came back; writes need the new primary
        r = await _answer(put(http, f"Patient/{created['id']}", {**created, "active": True}))
        if r.status_code != 503:
            break
        await asyncio.sleep(0.5)
    assert r.status_code == 200, r.text
