"""A whole EHR export loads (tests/data/ehr-export/transaction.json, 16 types): every resource reads back,
references across the types resolve (bundle.html#references), _include/_revinclude follow them, and the
R4 compartments (compartmentdefinition.html) answer: Patient, Encounter, Practitioner and RelatedPerson
compartment searches, $everything and Patient-level $export with _typeFilter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DATA, FHIR_JSON, body, parse

EXPORT = DATA / "ehr-export" / "transaction.json"


def _bundle() -> dict[str, Any]:
    return json.loads(Path(EXPORT).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def loaded(client: httpx.AsyncClient) -> dict[str, str]:
    """The export posted once: resource type (one resource of each) -> ``Type/id``."""
    bundle = _bundle()
    r = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    response = parse(r)
    out: dict[str, str] = {}
    for sent, answered in zip(bundle["entry"], response["entry"], strict=True):
        assert answered["response"]["status"].startswith("201"), answered
        location = answered["response"]["location"].split("/_history")[0]
        out[sent["resource"]["resourceType"]] = "/".join(location.split("/")[-2:])
    return out


async def _get(client: httpx.AsyncClient, url: str, **params: str) -> dict[str, Any]:
    r = await client.get(f"/fhir/{url}", params=params)
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


def _ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if mode is None or e["search"]["mode"] == mode}


async def test_every_resource_of_the_export_reads_back_with_resolved_references(
        client: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    assert len(loaded) == len(_bundle()["entry"]) == 16
    for location in loaded.values():
        resource = await _get(client, location)
        assert b"urn:uuid" not in body(resource)  # every reference was rewritten to the created resource
    observation = await _get(client, loaded["Observation"])
    assert observation["specimen"]["reference"] == loaded["Specimen"]
    assert observation["basedOn"][0]["reference"] == loaded["ServiceRequest"]
    provenance = await _get(client, loaded["Provenance"])
    assert [t["reference"] for t in provenance["target"]] == [loaded["Observation"], loaded["DiagnosticReport"]]


async def test_include_and_revinclude_follow_references_across_types(client: httpx.AsyncClient,
                                                                      loaded: dict[str, str]) -> None:
    report_id = loaded["DiagnosticReport"].split("/")[1]
    found = await _get(client, "DiagnosticReport", _id=report_id, _include="DiagnosticReport:result",
                       **{"_include:iterate": "Observation:specimen"})
    assert _ids(found, "include") == {loaded["Observation"], loaded["Specimen"]}
    practitioner_id = loaded["Practitioner"].split("/")[1]
    found = await _get(client, "Practitioner", _id=practitioner_id, _revinclude="PractitionerRole:practitioner")
    assert _ids(found, "include") == {loaded["PractitionerRole"]}
    found = await _get(client, "Observation", _id=loaded["Observation"].split("/")[1],
                       _revinclude="Provenance:target")
    assert _ids(found, "include") == {loaded["Provenance"]}


async def test_patient_compartment_holds_every_type_that_refers_to_the_patient(
        client: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    patient = loaded["Patient"]
    for kind in ("Encounter", "Condition", "Observation", "MedicationRequest", "MedicationAdministration",
                 "DiagnosticReport", "Specimen", "ServiceRequest", "Procedure", "AllergyIntolerance",
                 "RelatedPerson"):
        assert _ids(await _get(client, f"{patient}/{kind}")) == {loaded[kind]}, kind
    # compartmentdefinition-patient: Provenance is in the compartment through `patient` (target), PractitionerRole
    # is not in it at all.
    assert _ids(await _get(client, f"{patient}/PractitionerRole")) == set()


async def test_everything_returns_the_whole_export_of_the_patient(client: httpx.AsyncClient,
                                                                  loaded: dict[str, str]) -> None:
    everything = await _get(client, f"{loaded['Patient']}/$everything", _count="100")
    got = _ids(everything)
    in_compartment = {loaded[k] for k in ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest",
                                          "MedicationAdministration", "DiagnosticReport", "Specimen",
                                          "ServiceRequest", "Procedure", "AllergyIntolerance", "RelatedPerson")}
    assert in_compartment <= got
    assert {loaded["Organization"], loaded["Practitioner"]} <= got  # referenced, outside the compartment


@pytest.mark.parametrize(("compartment", "kind", "expected"), [
    ("Encounter", "Observation", "Observation"),
    ("Encounter", "DiagnosticReport", "DiagnosticReport"),
    ("Encounter", "Procedure", "Procedure"),
    ("Practitioner", "Encounter", "Encounter"),
    ("Practitioner", "Condition", "Condition"),
    ("Practitioner", "MedicationRequest", "MedicationRequest"),
    ("RelatedPerson", "Patient", None),
])
async def test_compartment_search_of_encounter_practitioner_and_related_person(
        client: httpx.AsyncClient, loaded: dict[str, str], compartment: str, kind: str, expected: str | None) -> None:
    found = _ids(await _get(client, f"{loaded[compartment]}/{kind}"))
    assert found == ({loaded[expected]} if expected else set())


async def test_a_compartment_r4_does_not_define_is_404(client: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    r = await client.get(f"/fhir/{loaded['Organization']}/Patient")
    assert r.status_code == 404
    assert parse(r)["issue"][0]["code"] == "not-supported"
