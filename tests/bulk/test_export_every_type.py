"""Bulk export of every R4 type (https://hl7.org/fhir/uv/bulkdata/export.html): Patient-level $export follows
the Patient compartment of each type (compartmentdefinition-patient), with _type and _typeFilter; system-level
$export writes a file for each type that holds data."""

from __future__ import annotations

import json

import httpx

from tests.bulk.conftest import export, ids
from tests.conftest import DATA, parse, post

EXPORT = DATA / "ehr-export" / "transaction.json"


async def _load(client: httpx.AsyncClient) -> dict[str, str]:
    """The EHR export transaction posted: resource type -> id."""
    r = await post(client, "", json.loads(EXPORT.read_text(encoding="utf-8")))
    assert r.status_code == 200, r.text
    return {e["response"]["location"].split("/_history")[0].split("/")[-2]:
            e["response"]["location"].split("/_history")[0].split("/")[-1] for e in parse(r)["entry"]}


async def test_patient_export_with_type_filter_covers_the_new_types(bulk: httpx.AsyncClient) -> None:
    loaded = await _load(bulk)
    files = await export(bulk, "Patient/$export?_type=Encounter,Observation,Specimen,MedicationAdministration"
                               "&_typeFilter=Observation%3Fcode%3Dhttp://loinc.org%7C69380-7")
    for kind in ("Encounter", "Observation", "Specimen", "MedicationAdministration"):
        assert loaded[kind] in ids(files.get(kind, [])), kind
    assert all(o["code"]["coding"][0]["code"] == "69380-7" for o in files["Observation"])


async def test_patient_export_refuses_a_type_outside_the_patient_compartment(bulk: httpx.AsyncClient) -> None:
    r = await bulk.get("/fhir/Patient/$export", params={"_type": "PractitionerRole"},
                       headers={"Prefer": "respond-async"})
    assert r.status_code == 400 and parse(r)["issue"][0]["code"] == "not-supported"


async def test_system_export_writes_every_type_that_holds_data(bulk: httpx.AsyncClient) -> None:
    loaded = await _load(bulk)
    files = await export(bulk, "$export?_type=Practitioner,PractitionerRole,Provenance,DiagnosticReport")
    for kind in ("Practitioner", "PractitionerRole", "Provenance", "DiagnosticReport"):
        assert loaded[kind] in ids(files[kind]), kind
