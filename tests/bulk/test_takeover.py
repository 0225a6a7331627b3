"""Several server nodes, one database: an export whose process died is resumed by another node (at its next
poll, or by its sweep) after the last type the dead one finished, at most ``FHIR_EXPORT_MAX_ATTEMPTS`` runs in
all; any node serves the files (GridFS). Node A is ``services``, node B ``registry_services``: two
``Services`` on one database, as two server processes have."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.bulk import runner
from fhir_server.bulk.jobs import COMPLETED, FAILED, STALE_AFTER_SECONDS, ExportJob, ExportJobs, new_job_id
from fhir_server.bulk.operation import sweep
from fhir_server.services import Services
from fhir_server.storage.documents import JOBS, now_ms
from tests.bulk import data
from tests.bulk.conftest import create, download, job_id_of, kickoff, local, stored_files
from tests.conftest import FHIR_JSON

pytestmark = pytest.mark.usefixtures("empty_db")


def node(services: Services) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(services.settings, services))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"Accept": FHIR_JSON})


async def stop_heartbeat(db: AsyncDatabase, job_id: str) -> None:
    """What the death of the running process looks like from outside: no heartbeat for too long."""
    stale = now_ms() - timedelta(seconds=STALE_AFTER_SECONDS + 1)
    await db[JOBS].update_one({"_id": job_id}, {"$set": {"heartbeat": stale}})


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(400):
        if await condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the condition never held")


def dead_job(types: list[str], attempts: int = 1) -> ExportJob:
    now = now_ms()
    return ExportJob(id=new_job_id(), level="system", request="http://testserver/fhir/$export", types=types,
                     transaction_time=now, expires=now + timedelta(hours=1), base_url="http://testserver/fhir",
                     caller="system", scopes=["system/*.*"], owner="elsewhere:1:dead", attempts=attempts)


async def test_an_export_whose_node_died_is_resumed_by_another_node_after_its_last_finished_type(
        services: Services, registry_services: Services, db: AsyncDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = asyncio.Event()
    original: Callable[..., Awaitable[Any]] = runner.type_query

    async def first_run_dies_after_one_type(ctx: Any, svc: Services, job: ExportJob, resource_type: str,
                                            patient_ids: Any) -> Any:
        if job.attempts == 1 and resource_type != job.types[0]:
            await release.wait()  # node A "dies" here: no heartbeat, no progress
        return await original(ctx, svc, job, resource_type, patient_ids)

    monkeypatch.setattr(runner, "type_query", first_run_dies_after_one_type)
    async with node(services) as a, node(registry_services) as b:
        patients = [await create(a, data.patient(f"FR-POI-{i:04d}")) for i in range(3)]
        labs = [await create(a, data.lab(p["id"])) for p in patients]
        location = await kickoff(a, "$export?_type=Patient,Observation")
        job_id = job_id_of(location)
        await until(lambda: _types_done(db, job_id, 1))
        node_a_task = runner._RUNNING[job_id]
        # the dead node left a half-written file behind
        await db["export.chunks"].insert_one({"files_id": f"{job_id}/1/Observation-1.ndjson", "n": 0, "data": b"{"})
        await stop_heartbeat(db, job_id)

        assert (await b.get(local(location))).status_code == 202  # node B took it over
        job = await ExportJobs(services.store).get(job_id)
        assert job is not None and job.attempts == 2 and job.types_done == 1
        await runner.wait(job_id)
        response = await b.get(local(location))
        assert response.status_code == 200, response.text
        manifest = fhirjson.loads(response.content)
        files = await download(a, manifest)  # node A serves what node B wrote
        assert sorted(r["id"] for r in files["Patient"]) == sorted(p["id"] for p in patients)
        assert sorted(r["id"] for r in files["Observation"]) == sorted(o["id"] for o in labs)

        release.set()  # node A wakes up: its updates are refused, it removes what it wrote meanwhile
        await asyncio.gather(node_a_task)
        assert await stored_files(db, job_id) == 2 * len(manifest["output"])  # each file: a document, a chunk
        assert await download(a, manifest) == files


async def _types_done(db: AsyncDatabase, job_id: str, count: int) -> bool:
    job = await db[JOBS].find_one({"_id": job_id})
    return job is not None and job.get("types_done", 0) >= count


async def test_the_sweep_resumes_a_dead_export_without_anyone_polling(
        services: Services, registry_services: Services, db: AsyncDatabase) -> None:
    async with node(services) as a:
        patient = await create(a, data.patient("FR-POI-0001"))
    job = dead_job(["Patient"])
    await ExportJobs(services.store).insert(job)
    await stop_heartbeat(db, job.id)
    taken_over = REGISTRY.get_sample_value("fhir_export_jobs_total", {"event": "taken-over"}) or 0
    await sweep(registry_services)
    await runner.wait(job.id)
    assert REGISTRY.get_sample_value("fhir_export_jobs_total", {"event": "taken-over"}) == taken_over + 1
    done = await ExportJobs(services.store).get(job.id)
    assert done is not None and done.status == COMPLETED and done.attempts == 2
    assert [(f.type, f.count) for f in done.output] == [("Patient", 1)]
    async with node(services) as a:
        manifest = fhirjson.loads((await a.get(f"/fhir/$export-poll-status?_jobId={job.id}")).content)
        assert [r["id"] for r in (await download(a, manifest))["Patient"]] == [patient["id"]]


async def test_an_export_whose_nodes_died_too_often_fails(services: Services, db: AsyncDatabase) -> None:
    job = dead_job(["Patient"], attempts=services.settings.export_max_attempts)
    await ExportJobs(services.store).insert(job)
    async with node(services) as a:
        status = f"/fhir/$export-poll-status?_jobId={job.id}"
        assert (await a.get(status)).status_code == 202  # heartbeat still fresh: its node may be alive
        await stop_heartbeat(db, job.id)
        response = await a.get(status)
    assert response.status_code == 500
    assert "stopped responding 3 times" in fhirjson.loads(response.content)["issue"][0]["diagnostics"]
    failed = await ExportJobs(services.store).get(job.id)
    assert failed is not None and failed.status == FAILED


async def test_an_export_on_a_node_that_shuts_down_is_handed_over_at_once(
        services: Services, registry_services: Services, db: AsyncDatabase, gate: asyncio.Event) -> None:
    async with node(services) as a:
        patient = await create(a, data.patient("FR-POI-0002"))
        job_id = job_id_of(await kickoff(a, "$export?_type=Patient"))
    await runner.stop_all()  # node A shuts down while its export runs (held before its first resource)
    gate.set()
    assert await ExportJobs(services.store).stale() == [job_id]  # no need to wait for its heartbeat to age
    await sweep(registry_services)
    await runner.wait(job_id)
    done = await ExportJobs(services.store).get(job_id)
    assert done is not None and done.status == COMPLETED and done.attempts == 2
    async with node(registry_services) as b:
        manifest = fhirjson.loads((await b.get(f"/fhir/$export-poll-status?_jobId={job_id}")).content)
        assert [r["id"] for r in (await download(b, manifest))["Patient"]] == [patient["id"]]
