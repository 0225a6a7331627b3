"""Search over HTTP against the real mongod of the test session, in a database of its own.

The server here is the plain FHIR server (the registry's profile rule table off: ``registry_rules=False``),
so that the tiny hand-made data sets of these tests, which are derived from search.html and not from the
data contract, are stored as they are. Each module starts from an empty database (:func:`fresh`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.api.app import create_app
from fhir_server.bootstrap import start_services
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON, parse, put


@pytest.fixture(scope="session")
async def search_services(mongo_uri: str, mongo_client: AsyncMongoClient) -> AsyncIterator[Services]:
    settings = Settings(mongodb_uri=mongo_uri, mongodb_db=f"search_{uuid.uuid4().hex[:8]}",
                        registry_rules=False, default_count=20, max_count=50, auth_mode="none")
    services = await start_services(settings, mongo_uri)
    try:
        yield services
    finally:
        await mongo_client.drop_database(settings.mongodb_db)
        await services.close()


@pytest.fixture(scope="session")
def search_db(mongo_client: AsyncMongoClient, search_services: Services) -> AsyncDatabase:
    """The database of ``search_services``, seen directly (see ``tests/conftest.py``, ``mongo_client``)."""
    return mongo_client[search_services.settings.mongodb_db]


@pytest.fixture(scope="session")
async def http(search_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(search_services.settings, search_services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                 headers={"Accept": FHIR_JSON}) as client:
        yield client


async def fresh(services: Services, db: AsyncDatabase) -> None:
    """Empty every collection of the search database (indexes stay) and reload the parameters."""
    for name in await db.list_collection_names():
        await db[name].delete_many({})
    await services.reload_search_parameters()


async def store(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    """PUT each resource at its id (create-on-update)."""
    for resource in resources:
        r = await put(client, f"{resource['resourceType']}/{resource['id']}", resource)
        assert r.status_code in (200, 201), r.text


async def search(client: httpx.AsyncClient, path: str, params: list[tuple[str, str]] | str = "",
                 **headers: str) -> dict[str, Any]:
    """GET ``/fhir/{path}?{params}`` expecting 200; returns the Bundle."""
    query = params if isinstance(params, str) else urlencode(params)
    r = await client.get(f"/fhir/{path}" + (f"?{query}" if query else ""), headers=headers)
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """Ids of the entries of ``mode`` in Bundle order (``Type/id`` for include entries)."""
    out = []
    for entry in bundle.get("entry", []):
        if entry.get("search", {}).get("mode") != mode:
            continue
        resource = entry["resource"]
        out.append(resource["id"] if mode == "match" else f"{resource['resourceType']}/{resource['id']}")
    return out


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == relation), None)
