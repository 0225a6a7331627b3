"""``fhir-server load FILE|DIR``: NDJSON and Bundle files, plain or gzipped, loaded over HTTP into a running
server (uvicorn in a thread, the real mongod), with a per-line error report and exit status 1 on a failed line;
and an ``$export`` of this server loaded back unchanged."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.cli import main
from fhir_server.load_command import Loader, run_load
from fhir_server.settings import Settings
from fhir_server.xml_format import resource_to_xml
from tests.bulk import data
from tests.bulk.test_import import ndjson
from tests.bulk.test_import_round_trip import comparable, exported_files, wipe
from tests.reports.helpers import serve

pytestmark = pytest.mark.usefixtures("empty_db")


def total(url: str, query: str) -> int:
    """The accurate total of ``query`` (its own parameters kept: httpx's ``params`` would replace them)."""
    with httpx.Client() as http:
        joined = "&" if "?" in query else "?"
        return int(http.get(f"{url}/fhir/{query}{joined}_total=accurate&_count=0").json()["total"])


def patient_with_lab(full_url: str, pseudonym: str) -> dict[str, Any]:
    """A transaction Bundle: a new Patient and a lab Observation referring to it by its ``urn:uuid:`` fullUrl."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": full_url, "resource": data.patient(pseudonym), "request": {"method": "POST", "url": "Patient"}},
        {"resource": data.lab("placeholder") | {"subject": {"reference": full_url}},
         "request": {"method": "POST", "url": "Observation"}}]}


def test_ndjson_and_bundle_files_of_a_directory_are_loaded(settings: Settings, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(ndjson([{**data.patient(f"FR-POI-{i}"), "id": f"ld-{i}"}
                                                      for i in range(3)]))
    (tmp_path / "Organization.ndjson.gz").write_bytes(gzip.compress(ndjson([data.organization("DE-MUC")])))
    transaction = patient_with_lab("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "FR-POI-T")
    (tmp_path / "submission.json").write_bytes(fhirjson.dumps(transaction))
    collection = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": {**data.patient("FR-POI-C"), "id": "ld-c"}}]}
    (tmp_path / "collection.json.gz").write_bytes(gzip.compress(fhirjson.dumps(collection)))
    (tmp_path / "notes.txt").write_text("not loaded")
    with serve(create_app(settings)) as url:
        code = run_load(tmp_path, f"{url}/fhir")
        err = capsys.readouterr().err
        assert code == 0, err
        assert "7 resources stored, 0 failed" in err
        assert total(url, "Patient") == 5
        assert total(url, "Organization?name=DE-MUC") == 1
        assert total(url, "Observation") == 1
        with httpx.Client() as http:
            assert http.get(f"{url}/fhir/Patient/ld-c").status_code == 200


def test_fhir_xml_files_are_loaded_and_a_broken_one_is_reported(settings: Settings, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """xml.html: a Bundle or a resource in FHIR XML loads as its JSON does; a file that is not FHIR XML fails."""
    transaction = patient_with_lab("urn:uuid:0c3f2a7e-54f4-4b8e-9a5b-0a8f1d2e3c4b", "FR-POI-X1")
    (tmp_path / "submission.xml").write_bytes(resource_to_xml(transaction))
    (tmp_path / "one.xml.gz").write_bytes(gzip.compress(resource_to_xml({**data.patient("FR-POI-X2"), "id": "ld-x"})))
    (tmp_path / "broken.xml").write_bytes(b"<Patient xmlns='http://hl7.org/fhir'><gender value='x'")
    report = tmp_path / "errors.tsv"
    with serve(create_app(settings)) as url:
        assert run_load(tmp_path, f"{url}/fhir", errors=report) == 1
        assert "3 resources stored, 1 failed" in capsys.readouterr().err
        assert total(url, "Patient?identifier=FR-POI-X1") == 1
        assert total(url, "Observation?subject.identifier=FR-POI-X1") == 1
        with httpx.Client() as http:
            stored = http.get(f"{url}/fhir/Patient/ld-x").json()
        assert stored["identifier"] == data.patient("FR-POI-X2")["identifier"]
    [row] = [line.split("\t") for line in report.read_text().splitlines()[1:]]
    assert (Path(row[0]).name, row[1]) == ("broken.xml", "file")
    assert row[2].startswith("error")


def test_a_bad_line_is_reported_with_its_line_number_and_the_others_are_stored(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[object] = [{**data.patient(f"FR-POI-{i}"), "id": f"bl-{i}"} for i in range(5)]
    lines[1] = {**data.patient("FR-POI-X"), "id": "bl-1", "gender": "sometimes"}
    lines[3] = b"{not json"
    path = tmp_path / "patients.ndjson"
    path.write_bytes(ndjson(lines))  # type: ignore[arg-type]
    report = tmp_path / "errors.tsv"
    with serve(create_app(settings)) as url:
        assert run_load(path, f"{url}/fhir", errors=report) == 1
        assert total(url, "Patient?_id=bl-0,bl-1,bl-2,bl-3,bl-4") == 3
    assert "3 resources stored, 2 failed" in capsys.readouterr().err
    rows = [row.split("\t") for row in report.read_text().splitlines()[1:]]
    assert [(Path(r[0]).name, r[1]) for r in rows] == [("patients.ndjson", "line 2"), ("patients.ndjson", "line 4")]
    assert "gender" in rows[0][2] and rows[0][2].startswith("error")


def test_several_jobs_store_every_line_and_report_failures_in_line_order(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[object] = [{**data.patient(f"FR-POI-{i}"), "id": f"jb-{i}"} for i in range(12)]
    lines[9] = {**data.patient("FR-POI-Y"), "id": "jb-9", "gender": "sometimes"}
    lines[2] = {**data.patient("FR-POI-Z"), "id": "jb-2", "gender": "sometimes"}
    path = tmp_path / "patients.ndjson"
    path.write_bytes(ndjson(lines))  # type: ignore[arg-type]
    report = tmp_path / "errors.tsv"
    with serve(create_app(settings)) as url:
        assert run_load(path, f"{url}/fhir", errors=report, chunk=2, jobs=3) == 1
        assert total(url, "Patient?identifier=https://cml-registry.eu/fhir/sid/patient|") == 10
    assert "10 resources stored, 2 failed" in capsys.readouterr().err
    assert [row.split("\t")[1] for row in report.read_text().splitlines()[1:]] == ["line 3", "line 10"]


def test_a_chunk_goes_as_one_transaction_and_again_as_a_batch_only_when_refused(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk is stored at once (one transaction Bundle); a chunk the server refuses (one bad line: nothing of it
    stored) goes again as a batch, whose per-entry outcomes name the line."""
    lines: list[object] = [{**data.patient(f"FR-POI-{i}"), "id": f"tx-{i}"} for i in range(6)]
    lines[4] = {**data.patient("FR-POI-W"), "id": "tx-4", "gender": "sometimes"}
    path = tmp_path / "patients.ndjson"
    path.write_bytes(ndjson(lines))  # type: ignore[arg-type]
    posted: list[tuple[str, int]] = []
    original = Loader.post

    def recorded(self: Loader, bundle: dict[str, Any]) -> tuple[int, Any]:
        posted.append((bundle["type"], len(bundle["entry"])))
        return original(self, bundle)

    monkeypatch.setattr(Loader, "post", recorded)
    report = tmp_path / "errors.tsv"
    with serve(create_app(settings)) as url:
        assert run_load(path, f"{url}/fhir", errors=report, chunk=3, jobs=1) == 1
        assert total(url, "Patient?_id=tx-0,tx-1,tx-2,tx-3,tx-4,tx-5") == 5
    assert posted == [("transaction", 3), ("transaction", 3), ("batch", 3)]
    assert "5 resources stored, 1 failed" in capsys.readouterr().err
    assert [row.split("\t")[1] for row in report.read_text().splitlines()[1:]] == ["line 5"]


def test_a_missing_file_is_exit_status_2(tmp_path: Path) -> None:
    assert main(["load", str(tmp_path / "nothing.ndjson"), "--url", "http://127.0.0.1:9/fhir"]) == 2


async def test_an_export_loads_back_unchanged_with_the_load_command(
        client: httpx.AsyncClient, db: AsyncDatabase, settings: Settings, tmp_path: Path) -> None:
    exported = await exported_files(client, tmp_path)
    await wipe(db)
    with serve(create_app(settings)) as url:
        assert run_load(tmp_path, f"{url}/fhir") == 0
    for kind, resources in exported.items():
        for resource in resources:
            loaded = fhirjson.loads((await client.get(f"/fhir/{kind}/{resource['id']}")).content)
            assert comparable(loaded) == comparable(resource)
