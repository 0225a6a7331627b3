"""Shared fixtures: one real mongod (single-node replica set) per test session, the app over real HTTP
semantics through httpx's ASGI transport, and helpers to build FHIR requests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.api.authentication import FixedCaller
from fhir_server.bootstrap import start_services
from fhir_server.permissions import Caller
from fhir_server.resources import CLINICAL_TYPES
from fhir_server.services import Services
from fhir_server.settings import Settings
from fhir_server.storage.client import connect
from fhir_server.storage.documents import CLAIMS, HISTORY, JOBS, REPORT_ROWS
from fhir_server.storage.mongod import temporary_mongod

DATA = Path(__file__).parent / "data"
EXAMPLES = DATA / "fhir-r4-examples"  # HL7's official R4 examples of our types (source and licence: README.md there)
OFFICIAL_EXAMPLE_COUNT = 138
BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A real mongod for the whole session, or the one named by FHIR_TEST_MONGODB_URI."""
    given = os.environ.get("FHIR_TEST_MONGODB_URI")
    if given:
        yield given
        return
    with temporary_mongod(cache_gb=0.5, prefix="ifp-fhir-test-") as uri:
        yield uri


@pytest.fixture(scope="session")
def settings(mongo_uri: str) -> Settings:
    """A plain FHIR server: the registry's rule table is not enforced (generic FHIR behaviour, HL7's examples),
    and every request is the full-access system caller (``FHIR_AUTH_MODE=none``; tests/security/ runs the
    server with tokens). Profiles a resource claims in meta.profile are still validated."""
    return Settings(mongodb_uri=mongo_uri, mongodb_db=f"test_{uuid.uuid4().hex[:8]}", max_body_bytes=1_000_000,
                    registry_rules=False, auth_mode="none")


@pytest.fixture(scope="session")
async def mongo_client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient]:
    """The tests' own connection, for arranging what no request can (a stopped heartbeat, a first version
    stored long ago) and for dropping test databases: the server reaches MongoDB only through ``storage/``."""
    client = connect(mongo_uri)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def db(mongo_client: AsyncMongoClient, settings: Settings) -> AsyncDatabase:
    """The database of ``services``, seen directly."""
    return mongo_client[settings.mongodb_db]


@asynccontextmanager
async def server_process(settings: Settings, mongo_uri: str) -> AsyncIterator[Services]:
    """A server process's worth of services, closed at the end (which writes its queued AuditEvents)."""
    svc = await start_services(settings, mongo_uri)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture(scope="session")
async def services(settings: Settings, mongo_uri: str, mongo_client: AsyncMongoClient) -> AsyncIterator[Services]:
    try:
        async with server_process(settings, mongo_uri) as svc:
            yield svc
    finally:
        await mongo_client.drop_database(settings.mongodb_db)


@pytest.fixture(scope="session")
async def registry_services(settings: Settings, mongo_uri: str, services: Services) -> AsyncIterator[Services]:
    """A second server process's worth of services on the same database, enforcing the registry's rules."""
    async with server_process(settings.model_copy(update={"registry_rules": True}), mongo_uri) as svc:
        yield svc


def _client(services: Services, caller: Caller | None = None) -> httpx.AsyncClient:
    app = create_app(services.settings, services, authenticator=FixedCaller(caller) if caller else None)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"Accept": FHIR_JSON})


def client_as(services: Services, caller: Caller) -> httpx.AsyncClient:
    """An HTTP client whose every request is ``caller`` (use as ``async with client_as(services, c) as http``):
    for tests of access rules, where the identity is given and the rules are the server's."""
    return _client(services, caller)


@pytest.fixture(scope="session")
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(services) as c:
        yield c


@pytest.fixture(scope="session")
async def registry_client(registry_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client of the registry server (rule table enforced), sharing the database with ``client``."""
    async with _client(registry_services) as c:
        yield c


@pytest.fixture
async def empty_db(services: Services, db: AsyncDatabase) -> AsyncIterator[None]:
    """For tests that count what the store holds: no clinical resources, their history, claims or jobs. The
    conformance resources loaded at start (profiles/, code systems) stay: writes are judged by them."""
    for resource_type in CLINICAL_TYPES:
        await db[resource_type].delete_many({})
    await db[HISTORY].delete_many({"type": {"$in": list(CLINICAL_TYPES)}})
    for name in (CLAIMS, JOBS, REPORT_ROWS):
        await db[name].delete_many({})
    yield


def body(value: Any) -> bytes:
    return fhirjson.dumps(value)


def parse(response: httpx.Response) -> Any:
    return fhirjson.loads(response.content)


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def official_examples() -> list[Path]:
    """The official examples, for parametrizing tests at collection time. Missing files fail the whole run
    (a collection error), never a silent zero tests."""
    files = sorted(EXAMPLES.glob("*.json"))
    if len(files) != OFFICIAL_EXAMPLE_COUNT:
        raise RuntimeError(f"{EXAMPLES} holds {len(files)} official examples, expected {OFFICIAL_EXAMPLE_COUNT}")
    return files


def load_example(name: str) -> dict[str, Any]:
    return fhirjson.loads((EXAMPLES / name).read_bytes())  # type: ignore[no-any-return]


async def post(client: httpx.AsyncClient, path: str, resource: Any, **headers: str) -> httpx.Response:
    return await client.post(f"/fhir/{path}", content=body(resource),
                             headers={"Content-Type": FHIR_JSON, **headers})


async def put(client: httpx.AsyncClient, path: str, resource: Any, **headers: str) -> httpx.Response:
    return await client.put(f"/fhir/{path}", content=body(resource), headers={"Content-Type": FHIR_JSON, **headers})


def patient(identifier: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "gender": "female", "birthDate": "1960-04-02"}
    if identifier:
        resource["identifier"] = [{"system": "https://cml-registry.eu/fhir/sid/patient", "value": identifier}]
    resource.update(extra)
    return resource
