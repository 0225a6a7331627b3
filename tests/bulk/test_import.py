"""Bulk Data Import ($import, ping and pull: https://github.com/smart-on-fhir/bulk-import/blob/master/
import-pnp.md) over HTTP against the real mongod: kick-off, polling, the manifest with per-input counts, the
error NDJSON of failed lines, refused paths, admin only."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.bulk import import_operation
from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from tests.bulk import data
from tests.bulk.conftest import job_id_of, local
from tests.conftest import FHIR_JSON, client_as

pytestmark = pytest.mark.usefixtures("empty_db")


@pytest.fixture
def import_dir(services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``FHIR_IMPORT_DIR`` of the server under test: a fresh directory."""
    folder = tmp_path / "imports"
    folder.mkdir()
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={"import_dir": folder}))
    return folder


def ndjson(resources: list[Any]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else fhirjson.dumps(r)) + b"\n" for r in resources)


def parameters(*urls: str, kind: str | None = None) -> dict[str, Any]:
    inputs = []
    for url in urls:
        parts: list[dict[str, Any]] = [{"name": "url", "valueUrl": url}]
        if kind:
            parts.append({"name": "type", "valueString": kind})
        inputs.append({"name": "input", "part": parts})
    return {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueString": "application/fhir+ndjson"}, *inputs]}


async def kick(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/fhir/$import", content=fhirjson.dumps(body),
                             headers={"Content-Type": FHIR_JSON, "Prefer": "respond-async"})


async def run_import(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """Kick off, wait for the job, poll: the manifest."""
    response = await kick(client, body)
    assert response.status_code == 202, response.text
    status = response.headers["content-location"]
    assert "/fhir/$import-poll-status?_jobId=" in status
    await import_operation.wait(job_id_of(status))
    answer = await client.get(local(status))
    assert answer.status_code == 200, answer.text
    return fhirjson.loads(answer.content)


async def errors_of(client: httpx.AsyncClient, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in manifest["error"]:
        response = await client.get(local(item["url"]))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [fhirjson.loads(line) for line in response.content.splitlines()]
        assert len(lines) == item["count"]
        found += lines
    return found


def line_of(outcome: dict[str, Any]) -> int:
    parts = {p["url"]: p for p in outcome["extension"][0]["extension"]}
    return int(parts["line"]["valueInteger"])


async def count(client: httpx.AsyncClient, query: str) -> int:
    """The accurate total of ``query`` (its own parameters kept: httpx's ``params`` would replace them)."""
    joined = "&" if "?" in query else "?"
    response = await client.get(f"/fhir/{query}{joined}_total=accurate&_count=0")
    return int(response.json()["total"])


async def test_an_ndjson_file_under_the_import_dir_is_loaded_with_its_ids(
        client: httpx.AsyncClient, import_dir: Path) -> None:
    patients = [{**data.patient(f"FR-POI-{i:04d}"), "id": f"imp-{i}"} for i in range(5)]
    labs = [{**data.lab(f"imp-{i}"), "id": f"lab-{i}"} for i in range(5)]
    (import_dir / "Patient.ndjson").write_bytes(ndjson(patients))
    (import_dir / "Observation.ndjson.gz").write_bytes(gzip.compress(ndjson(labs)))
    manifest = await run_import(client, parameters("Patient.ndjson", f"file://{import_dir}/Observation.ndjson.gz"))
    assert [o["count"] for o in manifest["output"]] == [5, 5]
    assert manifest["error"] == []
    assert manifest["request"].endswith("/fhir/$import")
    stored = (await client.get("/fhir/Patient/imp-3")).json()
    assert stored["identifier"] == patients[3]["identifier"]
    assert (await client.get("/fhir/Observation/lab-4")).json()["subject"] == {"reference": "Patient/imp-4"}


async def test_a_bad_line_is_reported_with_its_line_number_and_nothing_else_is_lost(
        client: httpx.AsyncClient, import_dir: Path) -> None:
    lines: list[Any] = [{**data.patient(f"FR-POI-{i:04d}"), "id": f"bad-{i}"} for i in range(6)]
    lines[2] = {**lines[2], "gender": "sometimes"}  # line 3: not in the required AdministrativeGender binding
    lines[4] = b'{"resourceType": "Patient", '  # line 5: not JSON
    (import_dir / "patients.ndjson").write_bytes(ndjson(lines))
    manifest = await run_import(client, parameters("patients.ndjson"))
    assert manifest["output"][0]["count"] == 4
    errors = await errors_of(client, manifest)
    assert sorted(line_of(e) for e in errors) == [3, 5]
    assert all(e["resourceType"] == "OperationOutcome" and e["issue"][0]["severity"] == "error" for e in errors)
    gender = next(e for e in errors if line_of(e) == 3)
    assert "gender" in fhirjson.dumps(gender["issue"]).decode()
    assert await count(client, "Patient?_id=bad-0,bad-1,bad-2,bad-3,bad-4,bad-5") == 4


async def test_a_line_of_another_type_than_its_input_declares_fails(client: httpx.AsyncClient,
                                                                  import_dir: Path) -> None:
    (import_dir / "mixed.ndjson").write_bytes(ndjson([data.patient("FR-POI-9"), data.organization()]))
    manifest = await run_import(client, parameters("mixed.ndjson", kind="Patient"))
    assert manifest["output"][0]["count"] == 1
    assert [line_of(e) for e in await errors_of(client, manifest)] == [2]


async def test_an_http_input_is_pulled(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    body = ndjson([{**data.organization("DE-MUC"), "id": "org-http"}])

    def serve(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://provider.example/files/Organization.ndjson"
        return httpx.Response(200, stream=httpx.ByteStream(gzip.compress(body)), headers={"Content-Encoding": "gzip"})

    original = httpx.AsyncClient

    def mocked(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        return original(*args, **{**kwargs, "transport": httpx.MockTransport(serve)})

    monkeypatch.setattr(import_operation.import_sources.httpx, "AsyncClient", mocked)
    manifest = await run_import(client, parameters("https://provider.example/files/Organization.ndjson"))
    assert manifest["output"][0]["count"] == 1
    assert (await client.get("/fhir/Organization/org-http")).json()["name"] == "DE-MUC"


@pytest.mark.parametrize("url", ["../outside.ndjson", "/etc/passwd", "file:///etc/passwd", "ftp://x/y.ndjson"])
async def test_a_path_outside_the_import_dir_is_refused(client: httpx.AsyncClient, import_dir: Path,
                                                        url: str) -> None:
    (import_dir.parent / "outside.ndjson").write_bytes(ndjson([data.patient("FR-POI-1")]))
    response = await kick(client, parameters(url))
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_without_an_import_dir_no_file_is_read(client: httpx.AsyncClient) -> None:
    response = await kick(client, parameters("Patient.ndjson"))
    assert response.status_code == 400
    assert "FHIR_IMPORT_DIR" in response.text


async def test_a_kickoff_without_inputs_is_400(client: httpx.AsyncClient) -> None:
    response = await kick(client, {"resourceType": "Parameters", "parameter": []})
    assert response.status_code == 400


@pytest.mark.parametrize("role", [Role.EHR, Role.RESEARCHER, Role.MAINTAINER])
async def test_only_an_admin_may_import(services: Services, import_dir: Path, role: Role) -> None:
    (import_dir / "p.ndjson").write_bytes(ndjson([data.patient("FR-POI-2")]))
    caller = Caller("someone", role, center="FR-POI" if role is Role.EHR else None)
    async with client_as(services, caller) as http:
        response = await kick(http, parameters("p.ndjson"))
    assert response.status_code == 403


async def test_an_admin_imports_and_polls(services: Services, import_dir: Path) -> None:
    (import_dir / "p.ndjson").write_bytes(ndjson([data.patient("FR-POI-3")]))
    async with client_as(services, Caller("admin-1", Role.ADMIN)) as http:
        manifest = await run_import(http, parameters("p.ndjson"))
    assert manifest["output"][0]["count"] == 1


async def test_a_cancelled_import_is_gone(client: httpx.AsyncClient, import_dir: Path) -> None:
    (import_dir / "p.ndjson").write_bytes(ndjson([data.patient("FR-POI-4")]))
    response = await kick(client, parameters("p.ndjson"))
    status = local(response.headers["content-location"])
    await import_operation.wait(job_id_of(status))
    assert (await client.delete(status)).status_code == 202
    assert (await client.get(status)).status_code == 404


async def test_an_import_whose_process_died_is_resumed_by_the_next_poll(
        client: httpx.AsyncClient, services: Services, db: Any, import_dir: Path) -> None:
    from datetime import timedelta

    from fhir_server.bulk.import_jobs import ImportInput, ImportJob, ImportJobs, new_job_id
    from fhir_server.context import RequestContext
    from fhir_server.storage.documents import JOBS, now_ms

    (import_dir / "p.ndjson").write_bytes(ndjson([{**data.patient("FR-POI-7"), "id": "resumed-1"}]))
    ctx = RequestContext.system("http://testserver/fhir")
    job = ImportJob(id=new_job_id(), request=ctx.url("$import"), transaction_time=now_ms(), expires=now_ms(),
                    base_url=ctx.base_url, caller=ctx.caller, scopes=sorted(ctx.scopes),
                    inputs=[ImportInput("p.ndjson")], owner="a-dead-process:1")
    await ImportJobs(services.store).insert(job)
    await db[JOBS].update_one({"_id": job.id}, {"$set": {"owner": "a-dead-process:1",
                                                         "heartbeat": now_ms() - timedelta(minutes=5)}})
    status = f"/fhir/$import-poll-status?_jobId={job.id}"
    assert (await client.get(status)).status_code == 202  # taken over here and started
    await import_operation.wait(job.id)
    answer = await client.get(status)
    assert answer.status_code == 200, answer.text
    assert fhirjson.loads(answer.content)["output"][0]["count"] == 1
    assert (await db[JOBS].find_one({"_id": job.id}))["attempts"] == 2
    assert (await client.get("/fhir/Patient/resumed-1")).status_code == 200


async def test_each_loaded_resource_is_stored_with_the_center_of_what_it_names(
        client: httpx.AsyncClient, import_dir: Path, db: AsyncDatabase) -> None:
    # the batch's center rules read the centers its own read of the ids found (one query per type, in the batch's
    # transaction): a moved Patient and what names it follow its new organization, what names a Patient stored
    # earlier takes that Patient's center
    first = [{**data.organization("FR-CTR"), "id": "org-fr"}, {**data.organization("DE-CTR"), "id": "org-de"},
             *({**data.patient(f"FR-CTR-{i}"), "id": f"ctr-{i}",
                "managingOrganization": {"reference": "Organization/org-fr"}} for i in (1, 2))]
    (import_dir / "first.ndjson").write_bytes(ndjson(first))
    assert (await run_import(client, parameters("first.ndjson")))["error"] == []
    second = [{**first[2], "managingOrganization": {"reference": "Organization/org-de"}},
              {**data.lab("ctr-1"), "id": "ctr-lab-1"}, {**data.lab("ctr-2"), "id": "ctr-lab-2"}]
    (import_dir / "second.ndjson").write_bytes(ndjson(second))
    assert (await run_import(client, parameters("second.ndjson")))["error"] == []
    stored = {(kind, ident): (await db[kind].find_one({"_id": ident}) or {}).get("center")
              for kind, ident in (("Patient", "ctr-1"), ("Patient", "ctr-2"), ("Observation", "ctr-lab-1"),
                                  ("Observation", "ctr-lab-2"))}
    assert stored == {("Patient", "ctr-1"): "DE-CTR", ("Patient", "ctr-2"): "FR-CTR",
                      ("Observation", "ctr-lab-1"): "DE-CTR", ("Observation", "ctr-lab-2"): "FR-CTR"}
