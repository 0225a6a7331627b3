"""mappings/registry-concepts.csv: every row points at an element of its profile's snapshot, and every coded
row at a code its value sets or code systems know."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fhir_server.terminology import Terminology

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
REGISTRY = "https://cml-registry.eu/fhir/CodeSystem/"
ROWS = list(csv.DictReader((ROOT / "mappings" / "registry-concepts.csv").open()))


def snapshot_ids(profile: str) -> set[str]:
    sd = json.loads((PROFILES / f"StructureDefinition-{profile}.json").read_text())
    return {e["id"] for e in sd["snapshot"]["element"]}


def test_table_has_the_expected_columns() -> None:
    assert list(ROWS[0]) == ["concept", "source", "profile", "element_path", "code_system", "code"]
    assert {r["source"] for r in ROWS} <= {"letter", "contract", "Form A"}


@pytest.mark.parametrize("row", ROWS, ids=[r["concept"] for r in ROWS])
def test_element_path_exists_in_profile_snapshot(row: dict[str, str]) -> None:
    assert row["element_path"] in snapshot_ids(row["profile"])


@pytest.mark.parametrize("row", [r for r in ROWS if r["code"] and r["code_system"].startswith(REGISTRY)],
                         ids=lambda r: r["concept"])
def test_registry_codes_exist(row: dict[str, str]) -> None:
    files = sorted(PROFILES.glob("CodeSystem-*.json"))
    term = Terminology(json.loads(p.read_text()) for p in files)
    assert term.lookup(row["code_system"], row["code"]) is not None


def test_every_registration_reason_is_mapped() -> None:
    mapped = {r["code"] for r in ROWS if r["code_system"] == REGISTRY + "ifp-registration-reason"}
    cs = json.loads((PROFILES / "CodeSystem-ifp-registration-reason.json").read_text())
    codes = {c["code"] for c in cs["concept"]} | {c["code"] for p in cs["concept"] for c in p.get("concept", [])}
    assert codes <= mapped
