"""The README's first example: ``examples/patient-bundle.json`` is accepted by a server with the registry's rules
on (the default settings), can be read back by the patient's pseudonym, counts in the registry report, and
posting it again (an EHR retry) creates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from fhir_server import fhirjson
from tests.conftest import FHIR_JSON, parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "patient-bundle.json"
PSEUDONYM = "https://cml-registry.eu/fhir/sid/patient|FR-POI-0042"


async def _post_example(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/fhir", content=EXAMPLE.read_bytes(), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


def _patients_counted(report: dict[str, Any]) -> int:
    group = next(g for g in report["group"] if g["code"]["coding"][0]["code"] == "patients")
    return group["population"][0]["count"]  # type: ignore[no-any-return]


async def test_example_bundle_is_accepted_with_the_registry_rules_on(registry_client: httpx.AsyncClient,
                                                                     empty_db: None) -> None:
    example = fhirjson.loads(EXAMPLE.read_bytes())
    response = await _post_example(registry_client)
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201"] * len(example["entry"])
    kinds = {e["resource"]["resourceType"] for e in example["entry"]}
    assert kinds == {"Organization", "Patient", "Condition", "MedicationStatement", "Observation"}


async def test_example_patient_is_found_by_pseudonym_and_counted_in_the_report(
        registry_client: httpx.AsyncClient, empty_db: None) -> None:
    await _post_example(registry_client)
    found = parse(await registry_client.get("/fhir/Patient", params={"identifier": PSEUDONYM}))
    assert [e["resource"]["identifier"][0]["value"] for e in found["entry"]] == ["FR-POI-0042"]
    report = await registry_client.get("/fhir/$registry-report")
    assert report.status_code == 200, report.text
    assert _patients_counted(parse(report)) == 1
    assert (await registry_client.get("/report")).status_code == 200


async def test_posting_the_example_again_creates_nothing(registry_client: httpx.AsyncClient,
                                                         empty_db: None) -> None:
    first = await _post_example(registry_client)
    again = await _post_example(registry_client)
    assert [e["response"]["status"][:3] for e in again["entry"]] == ["200"] * len(again["entry"])
    assert [e["response"]["location"] for e in again["entry"]] == [e["response"]["location"] for e in first["entry"]]
