"""``fhir-server import-csv``: Form A rows (mappings/form-a-columns.md) to contract-shaped Bundles, one
transaction per patient, and a round trip through the server checked with ``$registry-report``."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.cli import main
from fhir_server.legacy_import import COLUMNS, convert, local_validator, run_import, to_record
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.reports.helpers import flatten, pct, serve, two

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy-registry.csv"
BASE = "https://cml-registry.eu/fhir"
GOOD: dict[str, str] = {
    "pseudonym": "FR-POI-0042", "center_code": "FR-POI", "center_name": "CHU de Poitiers", "country": "FR",
    "sex": "F", "birth_date": "1960-04-02", "diagnosis_date": "2003-01-10", "phase_at_diagnosis": "CP",
    "spleen_cm": "4.0", "platelets": "450", "blasts_pct": "1.50", "eosinophils_pct": "2", "basophils_pct": "3",
    "imatinib_start": "2003-02-01", "imatinib_stop": "2005-02-01", "imatinib_dose_mg_day": "400",
    "registration_date": "2005-02-01", "registration_reason": "toxicity", "phase_at_registration": "CP",
    "toxicity_type": "rash", "toxicity_grade": "3", "prospective_study": "Y", "decision": "nilotinib",
}


def _rows() -> list[dict[str, str]]:
    with EXAMPLE.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def test_example_converts_with_one_bad_row() -> None:
    with EXAMPLE.open(encoding="utf-8", newline="") as f:
        results = list(convert(f))
    assert len(results) == 12
    bad = [r for r in results if r.error]
    assert [(r.row, r.pseudonym) for r in bad] == [(12, "DK-AAR-0111")]
    assert "imatinib_stop" in (bad[0].error or "")
    assert all(r.bundle for r in results if not r.error)


def test_row_becomes_the_contract_bundle() -> None:
    with io.StringIO() as text:
        writer = csv.DictWriter(text, list(COLUMNS))
        writer.writeheader()
        writer.writerow(GOOD)
        text.seek(0)
        [result] = list(convert(text, local_validator()))
    assert result.error is None, result.error
    bundle = result.bundle
    assert bundle is not None
    records = {r["identifier"][0]["value"] for e in bundle["entry"] for r in [e["resource"]]
               if r["identifier"][0]["system"] == f"{BASE}/sid/record"}
    assert {f"FR-POI-0042/{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9)} <= records
    [statement] = _resources(bundle, "MedicationStatement")
    assert statement["status"] == "stopped"
    assert {c["code"] for c in statement["statusReason"][0]["coding"]} == {"407563006", "toxicity"}
    assert statement["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 400
    labs = {o["code"]["coding"][0]["code"]: o["valueQuantity"]["value"] for o in _resources(bundle, "Observation")
            if "valueQuantity" in o and o["code"]["coding"][0]["code"] in ("spleen-size", "26446-5")}
    assert str(labs["spleen-size"]) == "4.0" and str(labs["26446-5"]) == "1.50"  # decimals as written
    assert b'"value":4.0' in fhirjson.dumps(bundle)
    [patient] = _resources(bundle, "Patient")
    assert patient["gender"] == "female" and patient["extension"][0]["valueBoolean"] is True


@pytest.mark.parametrize(("change", "column"), [
    ({"pseudonym": ""}, "pseudonym"), ({"sex": "X"}, "sex"), ({"birth_date": "1960-02-30"}, "birth_date"),
    ({"diagnosis_date": "10/01/2003"}, "diagnosis_date"), ({"phase_at_diagnosis": "early"}, "phase_at_diagnosis"),
    ({"blasts_pct": "120"}, "blasts_pct"), ({"platelets": "0"}, "platelets"), ({"spleen_cm": "big"}, "spleen_cm"),
    ({"imatinib_stop": "2002-01-01"}, "imatinib_stop"), ({"registration_date": "2001-01-01"}, "registration_date"),
    ({"registration_reason": "boredom"}, "registration_reason"), ({"toxicity_grade": ""}, "toxicity_grade"),
    ({"toxicity_grade": "6"}, "toxicity_grade"), ({"decision": "magic"}, "decision"),
    ({"second_line_atc": "L01EA02"}, "second_line_start"), ({"imatinib_dose_mg_day": "400mg"}, "imatinib_dose_mg_day"),
])
def test_rejections_name_the_column(change: dict[str, str], column: str) -> None:
    from fhir_server.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as exc:
        to_record({**GOOD, **change})
    assert str(exc.value).startswith(column)


def test_country_mismatch_is_a_warning() -> None:
    warnings: list[str] = []
    to_record({**GOOD, "country": "DE"}, warnings)
    assert warnings and "FR-POI" in warnings[0]


def test_unknown_column_rejects_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("pseudonym,shoe_size\nFR-POI-1,42\n")
    assert main(["import-csv", str(path), "--dry-run"]) == 2
    assert "unknown columns: shoe_size" in capsys.readouterr().err


def test_dry_run_reports_the_bad_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-csv", str(EXAMPLE), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "11 of 12 patients validated, 1 failed" in err
    assert "12\tDK-AAR-0111\timatinib_stop: is before imatinib_start" in err
    assert "12/12 rows" in err  # the progress bar


def _expected(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], Any]:
    """The report's numbers for the good example rows, straight from the CSV cells."""
    total = len(rows)
    reasons = Counter(r["registration_reason"] or "not-recorded" for r in rows)
    months = Counter(r["registration_date"][:7] for r in rows)
    countries = Counter(r["country"] for r in rows)
    out: dict[tuple[str, str, str], Any] = {("patients", "", ""): (total, None, None)}
    out.update({("registration-reason", "registration-reason", k): (n, pct(n, total), None)
                for k, n in reasons.items()})
    out.update({("registrations-by-month", "registrations-by-month", k): (n, pct(n, total), None)
                for k, n in months.items()})
    out.update({("patients", "country", k): (n, pct(n, total), None) for k, n in countries.items()})
    for group in ("failure", "toxicity"):
        members = [r for r in rows if r["registration_reason"]
                   and (r["registration_reason"] == "toxicity") == (group == "toxicity")]
        days = [(date.fromisoformat(r["imatinib_stop"]) - date.fromisoformat(r["imatinib_start"])).days
                for r in members]
        out[("imatinib-exposure", "duration-months", group)] = (
            len(members), None, two(statistics.median(d / (365.25 / 12) for d in days)))
        out[("imatinib-exposure", "daily-dose-at-stop", group)] = (
            len(members), None, two(statistics.median(int(r["imatinib_dose_mg_day"]) for r in members)))
    return out


async def test_round_trip_through_the_server(client: httpx.AsyncClient, services: Services,
                                             empty_db: None) -> None:
    with EXAMPLE.open(encoding="utf-8", newline="") as f:
        results = [r for r in convert(f) if r.bundle]
    for _ in range(2):  # importing twice changes nothing
        for result in results:
            response = await client.post("/fhir", content=fhirjson.dumps(result.bundle),
                                         headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text
    report = flatten(fhirjson.loads((await client.get("/fhir/$registry-report")).content))
    good = [r for r in _rows() if r["pseudonym"] != "DK-AAR-0111"]
    for key, value in _expected(good).items():
        assert report[key] == value, key
    assert report[("registration-reason", "registration-reason", "not-recorded")][0] == 1
    ages = sorted(int(r["diagnosis_date"][:4]) - int(r["birth_date"][:4])
                  - ((r["diagnosis_date"][5:10]) < (r["birth_date"][5:10] or "01-01")) for r in good)
    assert report[("age-at-diagnosis", "", "")] == (len(good), None, two(statistics.median(ages)))
    decisions = Counter(r["decision"] for r in good)
    assert report[("decision-after-imatinib", "decision-after-imatinib", "dasatinib")][0] == decisions["dasatinib"]
    assert report[("patients", "sex", "male")][0] == sum(r["sex"] == "M" for r in good)


async def test_cli_imports_over_http(services: Services, settings: Settings,
                                     capsys: pytest.CaptureFixture[str], empty_db: None) -> None:
    with serve(create_app(settings)) as url:
        code = run_import(EXAMPLE, f"{url}/fhir", dry_run=False)
        err = capsys.readouterr().err
        assert code == 1, err
        assert "11 of 12 patients imported, 1 failed" in err and "DK-AAR-0111" in err
        with httpx.Client() as http:
            bundle = http.get(f"{url}/fhir/Patient", params={"_summary": "count"}).json()
    assert bundle["total"] == 11


@pytest.mark.parametrize("cell", ["³", "2²"])
def test_digit_like_characters_are_a_row_rejection_not_a_crash(cell: str) -> None:
    """``str.isdigit`` accepts superscripts that ``int`` refuses: the row is rejected, naming the column."""
    from fhir_server.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as exc:
        to_record({**GOOD, "toxicity_grade": cell})
    assert str(exc.value).startswith("toxicity_grade")
