"""Cohorts as Groups: POST Group/$cohort, cohort_patient_ids, and Group/{id}/$export of a cohort."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server import fhirjson
from fhir_server.cohorts import COHORT_CRITERIA, cohort_patient_ids
from fhir_server.context import RequestContext
from fhir_server.errors import Gone, NotFound
from fhir_server.services import Services
from tests.bulk import data
from tests.bulk.conftest import create, export, ids
from tests.conftest import FHIR_JSON

pytestmark = pytest.mark.usefixtures("empty_db")
TOXICITY = f"Patient?_has:Observation:subject:value-concept={data.REASON}|toxicity"


async def registry(client: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    """Four patients: 0 and 2 registered for toxicity, 1 and 3 for failure (no CHR at 3 months)."""
    patients, observations = [], []
    for i in range(4):
        p = await create(client, data.patient(f"FR-POI-{i:04d}"))
        patients.append(p)
        observations.append(await create(client, data.registration(p["id"], "toxicity" if i % 2 == 0 else
                                                                   "no-chr-3m")))
        observations.append(await create(client, data.lab(p["id"])))
    return {"patients": patients, "observations": observations}


async def cohort(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    body = {"resourceType": "Parameters",
            "parameter": [{"name": k, "valueString": v} for k, v in params.items()]}
    return await client.post("/fhir/Group/$cohort", content=fhirjson.dumps(body),
                             headers={"Content-Type": FHIR_JSON})


async def test_cohort_stores_an_actual_group_of_the_matching_patients(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    response = await cohort(bulk, name="Toxicity", criteria=TOXICITY)
    assert response.status_code == 201, response.text
    group = fhirjson.loads(response.content)
    assert response.headers["location"].startswith(f"http://testserver/fhir/Group/{group['id']}/_history/1")
    assert group["type"] == "person" and group["actual"] is True and group["name"] == "Toxicity"
    expected = {made["patients"][0]["id"], made["patients"][2]["id"]}
    assert {m["entity"]["reference"] for m in group["member"]} == {f"Patient/{i}" for i in expected}
    assert group["quantity"] == 2
    assert group["extension"] == [{"url": COHORT_CRITERIA, "valueString": TOXICITY}]
    assert group["characteristic"][0]["valueCodeableConcept"]["text"] == TOXICITY
    stored = await bulk.get(f"/fhir/Group/{group['id']}")
    assert stored.status_code == 200
    assert fhirjson.loads(stored.content) == group


async def test_cohort_criteria_may_omit_the_type_and_name_defaults(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    response = await bulk.post("/fhir/Group/$cohort", params={"criteria": "identifier=" + data.BASE +
                                                             "/sid/patient|FR-POI-0001"})
    assert response.status_code == 201, response.text
    group = fhirjson.loads(response.content)
    assert [m["entity"]["reference"] for m in group["member"]] == [f"Patient/{made['patients'][1]['id']}"]
    assert group["name"].startswith("Cohort: identifier=")


async def test_a_cohort_without_matches_is_an_empty_group(bulk: httpx.AsyncClient) -> None:
    await registry(bulk)
    response = await cohort(bulk, name="none", criteria=f"Patient?_has:Observation:subject:value-concept="
                                                        f"{data.REASON}|progression-ap-bc")
    assert response.status_code == 201
    group = fhirjson.loads(response.content)
    assert group["quantity"] == 0 and "member" not in group


@pytest.mark.parametrize("criteria", ["Observation?code=x", "Patient?", "Patient?_count=10&gender=female",
                                      "Patient?no-such-parameter=1"])
async def test_bad_criteria_are_400(bulk: httpx.AsyncClient, criteria: str) -> None:
    response = await cohort(bulk, name="bad", criteria=criteria)
    assert response.status_code == 400, response.text


async def test_missing_criteria_is_400_and_get_is_405(bulk: httpx.AsyncClient) -> None:
    assert (await cohort(bulk, name="no criteria")).status_code == 400
    assert (await bulk.get("/fhir/Group/$cohort", params={"criteria": TOXICITY})).status_code == 405


async def test_cohort_patient_ids(bulk: httpx.AsyncClient, services: Services) -> None:
    made = await registry(bulk)
    group = fhirjson.loads((await cohort(bulk, name="Toxicity", criteria=TOXICITY)).content)
    ctx = RequestContext.system("http://testserver/fhir")
    expected = {made["patients"][0]["id"], made["patients"][2]["id"]}
    assert await cohort_patient_ids(ctx, services, group["id"]) == expected
    # a member deleted since is no longer part of the cohort
    assert (await bulk.delete(f"/fhir/Patient/{made['patients'][0]['id']}")).status_code in (200, 204)
    assert await cohort_patient_ids(ctx, services, group["id"]) == {made["patients"][2]["id"]}
    with pytest.raises(NotFound):
        await cohort_patient_ids(ctx, services, "unknown")
    assert (await bulk.delete(f"/fhir/Group/{group['id']}")).status_code in (200, 204)
    with pytest.raises(Gone):
        await cohort_patient_ids(ctx, services, group["id"])


async def test_group_export_of_a_cohort(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    group = fhirjson.loads((await cohort(bulk, name="Toxicity", criteria=TOXICITY)).content)
    files = await export(bulk, f"Group/{group['id']}/$export")
    members = {made["patients"][0]["id"], made["patients"][2]["id"]}
    assert ids(files["Patient"]) == members
    refs = {f"Patient/{m}" for m in members}
    assert ids(files["Observation"]) == {o["id"] for o in made["observations"] if o["subject"]["reference"] in refs}
    assert ids(files["Group"]) == {group["id"]}
