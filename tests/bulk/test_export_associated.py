"""``includeAssociatedData`` (Bulk Data IG 2.0, export.html#query-parameters): the Provenance of the exported
resources, every one (``RelevantProvenanceResources``) or the most recent per resource
(``LatestProvenanceResources``), in files of type Provenance after the types'. Who sees which Provenance is in
the isolation table (``tests/security/test_isolation_table.py``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server import fhirjson
from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from tests.bulk import data
from tests.bulk.conftest import ASYNC, create, download, export, finish, kickoff
from tests.conftest import client_as

pytestmark = pytest.mark.usefixtures("empty_db")
RELEVANT, LATEST = "RelevantProvenanceResources", "LatestProvenanceResources"


async def _provenance(client: httpx.AsyncClient, recorded: str, *targets: str) -> str:
    resource = {"resourceType": "Provenance", "recorded": recorded, "agent": [{"who": {"display": "an EHR"}}],
                "target": [{"reference": t} for t in targets]}
    return str((await create(client, resource))["id"])


async def _world(client: httpx.AsyncClient) -> dict[str, str]:
    """Two patients, p0's and p1's lab Observations, and five Provenances: A (p0, version 1), B (p0 and o1,
    relative to the server's base), C (a patient not stored), D (o1, older than B), E (p1, oldest)."""
    p0 = (await create(client, data.patient("FR-POI-0001")))["id"]
    p1 = (await create(client, data.patient("FR-POI-0002")))["id"]
    o1 = (await create(client, data.lab(p1)))["id"]
    return {
        "p0": p0, "p1": p1, "o1": o1,
        "A": await _provenance(client, "2020-01-01T00:00:00Z", f"Patient/{p0}/_history/1"),
        "B": await _provenance(client, "2021-01-01T00:00:00+02:00", f"Patient/{p0}",
                               f"http://testserver/fhir/Observation/{o1}"),
        "C": await _provenance(client, "2022-01-01T00:00:00Z", "Patient/never-stored"),
        "D": await _provenance(client, "2019-01-01T00:00:00Z", f"Observation/{o1}"),
        "E": await _provenance(client, "2018-01-01T00:00:00Z", f"Patient/{p1}"),
    }


def _named(world: dict[str, str], resources: list[dict[str, Any]]) -> set[str]:
    by_id = {ident: name for name, ident in world.items()}
    return {by_id[r["id"]] for r in resources}


async def test_relevant_provenance_is_every_provenance_of_an_exported_resource(bulk: httpx.AsyncClient) -> None:
    world = await _world(bulk)
    files = await export(bulk, f"$export?_type=Patient,Observation&includeAssociatedData={RELEVANT}")
    assert _named(world, files["Patient"] + files["Observation"]) == {"p0", "p1", "o1"}
    assert _named(world, files["Provenance"]) == {"A", "B", "D", "E"}


async def test_latest_provenance_is_the_most_recent_of_each_exported_resource(bulk: httpx.AsyncClient) -> None:
    world = await _world(bulk)
    files = await export(bulk, f"$export?_type=Patient,Observation&includeAssociatedData={LATEST}")
    # p0: B (2021) over A (2020); o1: B over D (2019); p1: E, its only one
    assert _named(world, files["Provenance"]) == {"B", "E"}


async def test_associated_provenance_follows_what_the_export_wrote(bulk: httpx.AsyncClient) -> None:
    world = await _world(bulk)
    patients_only = await export(bulk, f"$export?_type=Patient&includeAssociatedData={RELEVANT}")
    assert _named(world, patients_only["Provenance"]) == {"A", "B", "E"}
    one_patient = await export(bulk, f"Patient/$export?patient=Patient/{world['p1']}&_type=Patient,Observation"
                                     f"&includeAssociatedData={RELEVANT}")
    assert _named(world, one_patient["Provenance"]) == {"B", "D", "E"}
    labs = await export(bulk, f"$export?_type=Observation&_typeFilter=Observation?code=nothing"
                              f"&includeAssociatedData={RELEVANT}")
    assert "Provenance" not in labs  # nothing exported, nothing associated: no file


async def test_provenance_exported_as_a_type_is_not_written_again(bulk: httpx.AsyncClient) -> None:
    world = await _world(bulk)
    manifest = await finish(bulk, await kickoff(
        bulk, f"$export?_type=Patient,Provenance&includeAssociatedData={RELEVANT}"))
    names = [item["url"].rsplit("/", 1)[1] for item in manifest["output"] if item["type"] == "Provenance"]
    assert names == ["Provenance-1.ndjson"]  # the type's file; the associated one would have nothing new
    provenance = (await download(bulk, manifest))["Provenance"]
    assert len(provenance) == 5 and _named(world, provenance) == {"A", "B", "C", "D", "E"}


async def test_associated_provenance_is_its_own_file_of_type_provenance(bulk: httpx.AsyncClient) -> None:
    await _world(bulk)
    manifest = await finish(bulk, await kickoff(bulk, f"$export?_type=Patient&includeAssociatedData={RELEVANT}"
                                                      "&_elements=Provenance.target"))
    [item] = [i for i in manifest["output"] if i["type"] == "Provenance"]
    assert item["url"].endswith("/AssociatedProvenance-1.ndjson") and item["count"] == 3
    provenance = (await download(bulk, manifest))["Provenance"]
    assert all(set(p) <= {"resourceType", "id", "meta", "target", "recorded", "agent"} for p in provenance)
    assert all("SUBSETTED" in str(p["meta"]) for p in provenance)  # _elements applies to them too


async def test_an_unknown_associated_data_value_is_400_unless_lenient(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/$export?includeAssociatedData=_everythingElse", headers=ASYNC)
    assert response.status_code == 400
    assert fhirjson.loads(response.content)["issue"][0]["expression"] == ["includeAssociatedData"]
    lenient = await bulk.get("/fhir/$export?_type=Patient&includeAssociatedData=_everythingElse",
                             headers={**ASYNC, "Prefer": "respond-async, handling=lenient"})
    assert lenient.status_code == 202
    assert "includeAssociatedData _everythingElse" in lenient.text


async def test_associated_provenance_needs_a_scope_that_reads_provenance(services: Services) -> None:
    caller = Caller(id="patients-only", role=Role.RESEARCHER, scopes=frozenset({"system/Patient.rs"}))
    async with client_as(services, caller) as client:
        refused = await client.get(f"/fhir/$export?_type=Patient&includeAssociatedData={RELEVANT}", headers=ASYNC)
        assert refused.status_code == 403
        body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"},
                                                           {"name": "includeAssociatedData", "valueCode": LATEST}]}
        by_post = await client.post("/fhir/$export", json=body, headers=ASYNC)
        assert by_post.status_code == 403
        assert (await client.get("/fhir/$export?_type=Patient", headers=ASYNC)).status_code == 202
