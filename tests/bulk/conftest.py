"""Fixtures for bulk export and cohorts: an app with the export operations and the file router over the shared
``services`` (export files are kept in the database's GridFS bucket ``export``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.bulk import runner
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON, post

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def bulk(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app serving $export, $export-poll-status, $cohort and the export files."""
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": FHIR_JSON}) as client:
        yield client


def job_id_of(status_url: str) -> str:
    return parse_qs(urlsplit(status_url).query)["_jobId"][0]


def local(url: str) -> str:
    """The path and query of an absolute URL the server handed out."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def kickoff(client: httpx.AsyncClient, path: str, **headers: str) -> str:
    response = await client.get(f"/fhir/{path}", headers={**ASYNC, **headers})
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


async def finish(client: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Wait for the background task, then poll: the manifest."""
    await runner.wait(job_id_of(status_url))
    response = await client.get(local(status_url))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return fhirjson.loads(response.content)


async def download(client: httpx.AsyncClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """type -> resources, from every output file of the manifest (checking each file's count)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        response = await client.get(local(item["url"]))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [fhirjson.loads(line) for line in response.content.splitlines() if line.strip()]
        assert len(lines) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


async def export(client: httpx.AsyncClient, path: str, **headers: str) -> dict[str, list[dict[str, Any]]]:
    return await download(client, await finish(client, await kickoff(client, path, **headers)))


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await post(client, resource["resourceType"], resource)
    assert response.status_code == 201, response.text
    return fhirjson.loads(response.content)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Holds every export task before its first resource until the event is set (to observe 'running')."""
    event = asyncio.Event()
    original: Callable[..., Awaitable[Any]] = runner.ExportRun.all_types

    async def held(*args: Any, **kwargs: Any) -> Any:
        await event.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(runner.ExportRun, "all_types", held)
    return event


async def stored_files(db: AsyncDatabase, job_id: str) -> int:
    """How many GridFS documents (files and chunks, finished or half-written) the export ``job_id`` holds."""
    prefix = {"$regex": f"^{job_id}/"}
    return (await db["export.files"].count_documents({"_id": prefix})
            + await db["export.chunks"].count_documents({"files_id": prefix}))
