"""``fhir-server import-csv FILE [--url URL] [--dry-run] [--client ID] [--key FILE]``: the legacy registry
spreadsheet (Form A, one row per patient) into the registry, one transaction Bundle per patient, sent with the
client's SMART Backend Services tokens (``dev-admin`` by default, as ``fhir-server token``).

Columns, values and FHIR targets: mappings/form-a-columns.md (``COLUMNS`` below is that table). Each row is
converted with the same builder as the synthetic data (``fhir_server.registry.form_a.build_bundle``), so imported
patients are shaped exactly like the data contract's "typical submission", every resource created
conditionally (a re-import changes nothing). A row is one transaction: a bad row rejects that patient only,
never half of it. ``--dry-run`` converts and validates locally (structure and the profiles selected by
``profiles/rules.json``) and sends nothing. At the end a per-row error report (row, pseudonym, reason) is
printed; the exit code is 1 when a row failed, 2 when the file itself is unusable.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from fhir_server.auth_commands import add_client_arguments, client_key_path
from fhir_server.cli import command
from fhir_server.contract import DECISIONS, REASONS
from fhir_server.errors import FhirError, InvalidRequest
from fhir_server.registry.form_a import DosePeriod, PatientRecord, build_bundle
from fhir_server.settings import Settings, get_settings

REQUIRED = "required"
OPTIONAL = "optional"
# column -> required | optional (mappings/form-a-columns.md, "Columns")
COLUMNS: dict[str, str] = {
    "pseudonym": REQUIRED, "center_code": REQUIRED, "center_name": REQUIRED, "country": REQUIRED,
    "sex": REQUIRED, "birth_date": REQUIRED, "diagnosis_date": REQUIRED, "phase_at_diagnosis": REQUIRED,
    "spleen_cm": OPTIONAL, "platelets": OPTIONAL, "blasts_pct": OPTIONAL, "eosinophils_pct": OPTIONAL,
    "basophils_pct": OPTIONAL, "imatinib_start": REQUIRED, "imatinib_stop": OPTIONAL,
    "imatinib_dose_mg_day": REQUIRED, "registration_date": REQUIRED, "registration_reason": OPTIONAL,
    "phase_at_registration": REQUIRED, "toxicity_type": OPTIONAL, "toxicity_grade": OPTIONAL,
    "prospective_study": OPTIONAL, "decision": OPTIONAL, "decision_date": OPTIONAL,
    "second_line_atc": OPTIONAL, "second_line_start": OPTIONAL, "transplant_date": OPTIONAL,
}
SEX = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
PHASE = {"CP": "chronic", "AP": "accelerated", "BC": "blast", "CHRONIC": "chronic",
         "ACCELERATED": "accelerated", "BLAST": "blast"}
PROSPECTIVE = {"Y": True, "N": False}
SECOND_LINE_ATC = {"L01EA02", "L01EA03", "L01EA04", "L01EA05", "L01EA06", "L01XX05", "L03AB04", "L03AB05",
                   "L01XE06", "L01XE08", "L01XE14", "L01XE24"}
# lab column -> (baseline key, minimum, exclusive minimum, maximum)
LABS: dict[str, tuple[str, Decimal, bool, Decimal | None]] = {
    "spleen_cm": ("spleen", Decimal(0), False, None), "platelets": ("platelets", Decimal(0), True, None),
    "blasts_pct": ("blasts", Decimal(0), False, Decimal(100)),
    "eosinophils_pct": ("eosinophils", Decimal(0), False, Decimal(100)),
    "basophils_pct": ("basophils", Decimal(0), False, Decimal(100)),
}
_PSEUDONYM = re.compile(r"^[A-Z]{2}-[A-Z0-9]+-[A-Z0-9]+$")
_CENTER = re.compile(r"^[A-Z]{2}-[A-Z0-9]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


class RowRejected(InvalidRequest):
    """A row that cannot become a contract-conformant Bundle; names the column."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{column}: {message}", code="value", expression=(column,))


@dataclass
class Converted:
    """One row's outcome: its Bundle, or why not (``error``), plus warnings."""

    row: int  # line number in the file (the header is line 1)
    pseudonym: str
    bundle: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


# -- cell parsers ------------------------------------------------------------------------------------------


class Row:
    """A CSV row with typed, column-naming accessors (empty cell = not recorded = None)."""

    def __init__(self, cells: dict[str, str]) -> None:
        self.cells = {k: (v or "").strip() for k, v in cells.items() if k is not None}

    def text(self, column: str) -> str | None:
        value = self.cells.get(column, "")
        if not value and COLUMNS.get(column) == REQUIRED:
            raise RowRejected(column, "required value is empty")
        return value or None

    def code(self, column: str, allowed: dict[str, Any] | set[str], upper: bool = True) -> Any:
        value = self.text(column)
        if value is None:
            return None
        key = value.upper() if upper else value.lower()
        if key not in allowed:
            raise RowRejected(column, f"'{value}' is not one of {', '.join(sorted(allowed))}")
        return allowed[key] if isinstance(allowed, dict) else key

    def date(self, column: str) -> date | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise RowRejected(column, f"'{value}' is not a calendar date (YYYY-MM-DD)")

    def decimal(self, column: str, minimum: Decimal, exclusive: bool, maximum: Decimal | None) -> Decimal | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise RowRejected(column, f"'{value}' is not a decimal number") from None
        too_low = number <= minimum if exclusive else number < minimum
        if not number.is_finite() or too_low or (maximum is not None and number > maximum):
            raise RowRejected(column, f"{value} is out of range")
        return number

    def integer(self, column: str, low: int, high: int | None = None) -> int | None:
        value = self.text(column)
        if value is None:
            return None
        if not value.isdecimal() or int(value) < low or (high is not None and int(value) > high):
            raise RowRejected(column, f"'{value}' is not an integer in {low}-{high or '...'}")
        return int(value)


# -- a row to a PatientRecord ------------------------------------------------------------------------------


def _identity(row: Row, warnings: list[str]) -> dict[str, Any]:
    pseudonym = (row.text("pseudonym") or "").upper()
    if not _PSEUDONYM.match(pseudonym):
        raise RowRejected("pseudonym", f"'{pseudonym}' is not a pseudonym like FR-POI-0042")
    center = (row.text("center_code") or "").upper()
    if not _CENTER.match(center):
        raise RowRejected("center_code", f"'{center}' is not a center code like FR-POI")
    country = (row.text("country") or "").upper()
    if not _COUNTRY.match(country):
        raise RowRejected("country", f"'{country}' is not an ISO 3166-1 alpha-2 code")
    if country != center[:2]:
        warnings.append(f"country {country} differs from the country prefix of center_code {center}")
    birth = row.text("birth_date") or ""
    if not _PARTIAL_DATE.match(birth) or not _valid_partial(birth):
        raise RowRejected("birth_date", f"'{birth}' is not a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    return {"pseudonym": pseudonym, "center": center, "center_name": row.text("center_name"),
            "country": country, "sex": row.code("sex", SEX), "birth_date": birth,
            "prospective": row.code("prospective_study", PROSPECTIVE)}


def _valid_partial(text: str) -> bool:
    parts = [int(p) for p in text.split("-")]
    try:
        date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        return False
    return True


def _imatinib(row: Row) -> tuple[DosePeriod, ...]:
    start = row.date("imatinib_start")
    stop = row.date("imatinib_stop")
    assert start is not None
    if stop is not None and stop < start:
        raise RowRejected("imatinib_stop", "is before imatinib_start")
    dose = row.integer("imatinib_dose_mg_day", 1)
    return (DosePeriod(start, stop, Decimal(dose or 0)),)


def _registration(row: Row, diagnosed: date) -> dict[str, Any]:
    registered = row.date("registration_date")
    assert registered is not None
    if registered < diagnosed:
        raise RowRejected("registration_date", "is before diagnosis_date")
    reason = row.code("registration_reason", set(REASONS), upper=False)
    out: dict[str, Any] = {"registration_date": registered, "stop_reason": reason,
                           "phase_at_registration": row.code("phase_at_registration", PHASE)}
    if reason == "toxicity":
        kind = row.text("toxicity_type")
        grade = row.integer("toxicity_grade", 1, 5)
        if kind is None or grade is None:
            missing = "toxicity_type" if kind is None else "toxicity_grade"
            raise RowRejected(missing, "required when registration_reason is toxicity")
        out.update({"toxicity_type": kind, "toxicity_grade": grade})
    return out


def _after(row: Row) -> dict[str, Any]:
    atc = row.code("second_line_atc", SECOND_LINE_ATC)
    start = row.date("second_line_start")
    if atc and start is None:
        raise RowRejected("second_line_start", "required when second_line_atc is given")
    return {"decision": row.code("decision", set(DECISIONS), upper=False), "decision_date": row.date("decision_date"),
            "second_line_atc": atc, "second_line_start": start, "transplant_date": row.date("transplant_date")}


def to_record(cells: dict[str, str], warnings: list[str] | None = None) -> PatientRecord:
    """One Form A row as a PatientRecord; ``RowRejected`` names the offending column."""
    row = Row(cells)
    warnings = warnings if warnings is not None else []
    identity = _identity(row, warnings)
    diagnosed = row.date("diagnosis_date")
    assert diagnosed is not None
    baseline = {key: value for column, (key, low, exclusive, high) in LABS.items()
                if (value := row.decimal(column, low, exclusive, high)) is not None}
    return PatientRecord(
        **identity, diagnosis_date=diagnosed, phase_at_diagnosis=row.code("phase_at_diagnosis", PHASE),
        periods=_imatinib(row), baseline=baseline, **_registration(row, diagnosed), **_after(row))


# -- the file ----------------------------------------------------------------------------------------------


def check_header(columns: list[str] | None) -> None:
    """Unknown columns, or missing required ones, make the whole file unusable."""
    if not columns:
        raise InvalidRequest("the file has no header row", code="structure")
    unknown = [c for c in columns if c not in COLUMNS]
    missing = [c for c, kind in COLUMNS.items() if kind == REQUIRED and c not in columns]
    problems = ([f"unknown columns: {', '.join(unknown)}"] if unknown else []) + (
        [f"missing required columns: {', '.join(missing)}"] if missing else [])
    if problems:
        raise InvalidRequest("; ".join(problems), code="structure")


Validator = Callable[[dict[str, Any]], list[str]]


def convert(lines: TextIO, validate: Validator | None = None) -> Iterator[Converted]:
    """Every row of a Form A CSV as a Bundle or an error; ``validate`` (optional) checks each Bundle."""
    reader = csv.DictReader(lines)
    check_header(list(reader.fieldnames or []))
    for cells in reader:
        line = reader.line_num
        result = Converted(line, (cells.get("pseudonym") or "").strip().upper())
        try:
            record = to_record(cells, result.warnings)
            result.bundle = build_bundle(record)
        except FhirError as exc:
            result.error = str(exc)
        if result.bundle is not None and validate is not None:
            problems = validate(result.bundle)
            if problems:
                result.bundle, result.error = None, "; ".join(problems)
        yield result


def local_validator() -> Validator:
    """Structure (R4 model, primitives) and the profiles ``rules.json`` selects, without a server; the profiles
    are those the server loads (``FHIR_PROFILES_DIR``)."""
    from fhir_server.resources import check_structure
    from fhir_server.validation.conformance import ConformanceSnapshot
    from fhir_server.validation.profile import ProfileValidator
    from fhir_server.validation.rules import load_rules, profiles_required_for

    directory = get_settings().profiles_dir
    profiles = ProfileValidator(ConformanceSnapshot.from_package_dir(str(directory)))
    rules = load_rules(directory / "rules.json")

    def validate(bundle: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        for entry in bundle["entry"]:
            resource = entry["resource"]
            try:
                check_structure(resource)
            except FhirError as exc:
                problems.append(f"{resource['resourceType']}: {exc}")
            for profile in profiles_required_for(resource, rules):
                problems += [f"{resource['resourceType']} ({profile.rsplit('/', 1)[-1]}): {i.diagnostics}"
                             for i in profiles.validate(resource, profile) if i.severity in ("error", "fatal")]
        return problems
    return validate


# -- sending -----------------------------------------------------------------------------------------------


def outcome_text(status: int, body: bytes) -> str:
    """The diagnostics of an error response (OperationOutcome), or its status."""
    from fhir_server import fhirjson

    try:
        outcome = fhirjson.loads(body)
        issues = [i.get("diagnostics") or i.get("code", "") for i in outcome.get("issue", [])]
        return f"HTTP {status}: " + "; ".join(issues)
    except (FhirError, AttributeError):
        return f"HTTP {status}"


def submit(result: Converted, post: Callable[[bytes], tuple[int, bytes]]) -> None:
    """POST one Bundle; a non-200 answer becomes the row's error."""
    from fhir_server import fhirjson

    assert result.bundle is not None
    status, body = post(fhirjson.dumps(result.bundle))
    if status != 200:
        result.error = outcome_text(status, body)


def progress(done: int, total: int, failed: int, out: TextIO) -> None:
    width = 30
    filled = width * done // max(total, 1)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows, {failed} failed")
    out.flush()


def report(results: list[Converted], out: TextIO, dry_run: bool) -> None:
    """The per-row error report (row, pseudonym, reason) and warnings."""
    failed = [r for r in results if r.error]
    verb = "validated" if dry_run else "imported"
    out.write(f"\n{len(results) - len(failed)} of {len(results)} patients {verb}, {len(failed)} failed\n")
    for r in results:
        for warning in r.warnings:
            out.write(f"  warning row {r.row} {r.pseudonym or '-'}: {warning}\n")
    if failed:
        out.write("row\tpseudonym\treason\n")
        for r in failed:
            out.write(f"{r.row}\t{r.pseudonym or '-'}\t{r.error}\n")


def run_import(path: Path, url: str, dry_run: bool, out: TextIO | None = None, auth: Any = None) -> int:
    """Convert, validate (dry run) or send, report; the exit code. Progress and report go to ``out``
    (stderr by default); ``auth`` (an ``httpx.Auth``) authenticates the requests."""
    import httpx

    out = out or sys.stderr

    try:
        with path.open(encoding="utf-8-sig", newline="") as lines:
            total = sum(1 for _ in csv.DictReader(lines))
            lines.seek(0)
            results: list[Converted] = []
            validate = local_validator() if dry_run else None
            with httpx.Client(timeout=60, auth=auth, headers={"Content-Type": "application/fhir+json",
                                                   "Accept": "application/fhir+json"}) as client:
                def post(body: bytes) -> tuple[int, bytes]:
                    response = client.post(url, content=body)
                    return response.status_code, response.content

                for result in convert(lines, validate):
                    if result.bundle is not None and not dry_run:
                        try:
                            submit(result, post)
                        except httpx.HTTPError as exc:
                            result.error = f"could not reach {url}: {exc}"
                    results.append(result)
                    progress(len(results), total, sum(1 for r in results if r.error), out)
    except (OSError, UnicodeDecodeError, FhirError, csv.Error) as exc:
        out.write(f"cannot import {path}: {exc}\n")
        return 2
    report(results, out, dry_run)
    return 1 if any(r.error for r in results) else 0


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="Form A CSV (columns: mappings/form-a-columns.md)")
    parser.add_argument("--url", default="http://127.0.0.1:8080/fhir", help="the FHIR base to POST Bundles to")
    parser.add_argument("--dry-run", action="store_true", help="convert and validate locally, send nothing")
    add_client_arguments(parser)


@command("import-csv", _args)
def import_csv(args: argparse.Namespace, settings: Settings) -> int:
    """Import a legacy Form A spreadsheet (CSV), one transaction per patient."""
    return run_import(args.file, args.url.rstrip("/"), args.dry_run, auth=_auth(args, settings))


def _auth(args: argparse.Namespace, settings: Settings) -> Any:
    """The client's backend-services authentication, when its private key is there (without it the requests
    go unauthenticated: a server in FHIR_AUTH_MODE=none takes them, a server with tokens answers 401)."""
    from fhir_server.security.client import BackendServicesAuth
    from fhir_server.security.registration import load_private_key

    path = client_key_path(args, settings)
    if args.dry_run or not path.exists():
        return None
    return BackendServicesAuth(args.url.rstrip("/"), args.client, load_private_key(path))
