"""``$import`` reads, parses and structure-checks the next batch while the current one is stored
(``import_operation._load_input``). What the store answers is read only after the previous batch committed, so
a line is judged as it would be had the batches run one after the other: these tests make the batches small
(``BATCH_SIZE`` 2) so that a file spans several, and check each dependency of one batch on the one before."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.bulk import import_operation, import_sources, loader
from fhir_server.errors import Conflict
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.storage.documents import HISTORY
from tests.bulk import data
from tests.bulk.conftest import job_id_of, local
from tests.bulk.test_import import (  # noqa: F401 (import_dir: the fixture)
    errors_of,
    import_dir,
    kick,
    line_of,
    ndjson,
    parameters,
    run_import,
)

pytestmark = pytest.mark.usefixtures("empty_db")


@pytest.fixture
def folder(import_dir: Path) -> Path:  # noqa: F811 (the fixture of test_import)
    """``FHIR_IMPORT_DIR`` of the server under test."""
    return import_dir


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_operation, "BATCH_SIZE", 2)


def patient(ident: str, organization: str | None = None) -> dict[str, Any]:
    found = {**data.patient(f"FR-PIP-{ident}"), "id": ident}
    if organization:
        found["managingOrganization"] = {"reference": f"Organization/{organization}"}
    return found


@pytest.fixture
def batches_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """What happened, in order: ("start"/"end", the lines of a stored batch) and ("prepared", [line])."""
    events: list[tuple[str, list[int]]] = []
    load_batch, prepare = import_operation.load_batch, import_operation.prepare

    async def recording_load(ctx: Any, services: Any, items: list[loader.LoadItem]) -> list[loader.LoadResult]:
        events.append(("start", [i.line for i in items]))
        try:
            return await load_batch(ctx, services, items)
        finally:
            events.append(("end", [i.line for i in items]))

    def recording_prepare(item: loader.LoadItem) -> None:
        events.append(("prepared", [item.line]))
        prepare(item)

    monkeypatch.setattr(import_operation, "load_batch", recording_load)
    monkeypatch.setattr(import_operation, "prepare", recording_prepare)
    return events


async def test_the_next_batch_is_prepared_while_one_is_stored_and_stored_only_after_it(
        client: httpx.AsyncClient, folder: Path, batches_seen: list[tuple[str, list[int]]]) -> None:
    (folder / "p.ndjson").write_bytes(ndjson([patient(f"pip-{i}") for i in range(1, 6)]))
    manifest = await run_import(client, parameters("p.ndjson"))
    assert manifest["output"][0]["count"] == 5
    stored = [(kind, lines) for kind, lines in batches_seen if kind != "prepared"]
    assert stored == [("start", [1, 2]), ("end", [1, 2]), ("start", [3, 4]), ("end", [3, 4]),
                      ("start", [5]), ("end", [5])]  # one batch in the database at a time, in file order
    first_end = batches_seen.index(("end", [1, 2]))
    assert batches_seen.index(("prepared", [3])) < first_end  # read ahead, during the first batch's I/O


async def test_a_line_naming_a_patient_of_the_previous_batch_takes_its_center(
        client: httpx.AsyncClient, folder: Path, db: AsyncDatabase) -> None:
    lines = [{**data.organization("FR-PIP"), "id": "org-pip"}, patient("pip-1", "org-pip"),
             {**data.lab("pip-1"), "id": "pip-lab-1"}, {**data.diagnosis("pip-1"), "id": "pip-dx-1"}]
    (folder / "all.ndjson").write_bytes(ndjson(lines))
    manifest = await run_import(client, parameters("all.ndjson"))
    assert manifest["error"] == []
    centers = {kind: (await db[kind].find_one({"_id": ident}) or {}).get("center")
               for kind, ident in (("Patient", "pip-1"), ("Observation", "pip-lab-1"), ("Condition", "pip-dx-1"))}
    assert centers == {"Patient": "FR-PIP", "Observation": "FR-PIP", "Condition": "FR-PIP"}


async def test_an_update_of_an_id_stored_by_the_previous_batch_is_its_next_version(
        client: httpx.AsyncClient, folder: Path, db: AsyncDatabase) -> None:
    first = patient("pip-up")
    lines = [first, patient("pip-other"), {**first, "gender": "male"}, {**first, "gender": "other"}]
    (folder / "up.ndjson").write_bytes(ndjson(lines))
    manifest = await run_import(client, parameters("up.ndjson"))
    assert manifest["error"] == []
    current = (await client.get("/fhir/Patient/pip-up")).json()
    assert (current["gender"], current["meta"]["versionId"]) == ("other", "3")
    versions = await db[HISTORY].count_documents({"type": "Patient", "id": "pip-up"})
    assert versions == 3


async def test_when_a_batch_cannot_commit_the_next_still_finds_what_it_stored_line_by_line(
        client: httpx.AsyncClient, folder: Path, db: AsyncDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # the first batch's transaction fails as a whole (not transiently): the loader stores its lines one by one,
    # and only then is the next batch, whose Observation names the first batch's Patient, judged
    run = loader.run_in_transaction
    failed: list[int] = []

    async def failing_once(ctx: Any, services: Any, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
        async def work_then_fail(uow: UnitOfWork) -> Any:
            result = await work(uow)
            if not failed:
                failed.append(1)
                raise Conflict("the commit of this batch fails once (test)")
            return result
        return await run(ctx, services, work_then_fail)

    monkeypatch.setattr(loader, "run_in_transaction", failing_once)
    lines = [{**data.organization("FR-PIF"), "id": "org-pif"}, patient("pif-1", "org-pif"),
             {**data.lab("pif-1"), "id": "pif-lab-1"}]
    (folder / "f.ndjson").write_bytes(ndjson(lines))
    manifest = await run_import(client, parameters("f.ndjson"))
    assert failed == [1]
    assert manifest["error"] == []
    assert manifest["output"][0]["count"] == 3
    lab = await db["Observation"].find_one({"_id": "pif-lab-1"})
    assert lab is not None and lab["center"] == "FR-PIF"


async def test_lines_refused_ahead_are_reported_in_the_order_of_the_batches(
        client: httpx.AsyncClient, folder: Path) -> None:
    lines: list[Any] = [patient("pio-1"), {**patient("pio-2"), "birthDate": "not a date"},  # batch 1: line 2
                        b'{"resourceType": ', patient("pio-4"),  # line 3 unreadable, batch 2 goes on
                        {**patient("pio-5"), "gender": "sometimes"},  # line 5: its binding (a database read)
                        {"resourceType": "Nonsense"}]  # line 6: not a supported type, last batch
    (folder / "o.ndjson").write_bytes(ndjson(lines))
    manifest = await run_import(client, parameters("o.ndjson"))
    assert manifest["output"][0]["count"] == 2
    errors = await errors_of(client, manifest)
    assert [line_of(e) for e in errors] == [2, 3, 5, 6]
    assert "birthDate" in str(errors[0]["issue"])


async def test_a_file_that_breaks_off_keeps_the_batches_before_and_fails_the_job(
        client: httpx.AsyncClient, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_lines = import_sources.lines

    async def breaking(url: str, folder: Path | None, headers: Any = None) -> Any:
        async for number, line in real_lines(url, folder, headers):
            if number == 6:
                raise OSError("connection reset (test)")
            yield number, line

    monkeypatch.setattr(import_operation.import_sources, "lines", breaking)
    (folder / "b.ndjson").write_bytes(ndjson([patient(f"pib-{i}") for i in range(1, 8)]))
    response = await kick(client, parameters("b.ndjson"))
    assert response.status_code == 202, response.text
    status = response.headers["content-location"]
    await import_operation.wait(job_id_of(status))
    answer = await client.get(local(status))
    assert answer.status_code == 500
    assert "connection reset" in answer.text
    stored = (await client.get("/fhir/Patient", params={"_count": "20"})).json()
    assert sorted(e["resource"]["id"] for e in stored.get("entry", [])) == [f"pib-{i}" for i in range(1, 5)]


async def test_a_job_cancelled_while_a_batch_is_stored_leaves_no_read_ahead_running(
        client: httpx.AsyncClient, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storing, release = asyncio.Event(), asyncio.Event()

    async def stalled(ctx: Any, services: Any, items: list[loader.LoadItem]) -> list[loader.LoadResult]:
        storing.set()
        await release.wait()  # never set: the job is cancelled here
        raise AssertionError("not reached")

    real_lines = import_sources.lines

    async def slow_source(url: str, where: Path | None, headers: Any = None) -> Any:
        async for number, line in real_lines(url, where, headers):
            if number == 4:  # the read-ahead of the second batch waits here for the rest of the file
                await release.wait()
            yield number, line

    monkeypatch.setattr(import_operation, "load_batch", stalled)
    monkeypatch.setattr(import_operation.import_sources, "lines", slow_source)
    (folder / "c.ndjson").write_bytes(ndjson([patient(f"pic-{i}") for i in range(1, 8)]))
    status = (await kick(client, parameters("c.ndjson"))).headers["content-location"]
    await asyncio.wait_for(storing.wait(), 60)
    assert (await client.delete(local(status))).status_code == 202
    await import_operation.wait(job_id_of(status))
    left = [t for t in asyncio.all_tasks() if not t.done() and "_next" in repr(t.get_coro())]
    assert left == []
