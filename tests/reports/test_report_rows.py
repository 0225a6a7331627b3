"""The registry report is served from per-patient rows kept at write time (``storage/report_rows.py``; issue #14
item 4): the rows a store keeps are, after any write, the rows the report's definitions compute from the source
resources (``reports/pipeline.py``, ``row_pipeline``), and the report from them is the report from the sources,
for every caller, through the same access filter."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.bootstrap import keep_report_rows, rebuild_rows
from fhir_server.bulk.loader import LoadItem, load_batch
from fhir_server.context import RequestContext
from fhir_server.permissions import Caller, Role
from fhir_server.reports.model import Filters
from fhir_server.reports.pipeline import (
    CONCEPTS,
    ROW_OBSERVATION_CODES,
    may_make_a_row,
    observation_stages,
    report_pipeline,
    row_pipeline,
    run_report_pipeline,
)
from fhir_server.reports.terminology import report_codes
from fhir_server.services import Services
from fhir_server.storage.aggregation import ReadFilters, UnguardedRead, guarded
from fhir_server.storage.documents import REPORT_ROWS
from fhir_server.storage.report_rows import ReportRows
from tests.conftest import FHIR_JSON, client_as, parse
from tests.reports.helpers import flatten, load_cohort
from tests.synthetic import PatientFacts, registry_cohort

SYSTEM = RequestContext.system()


def ehr(center: str) -> RequestContext:
    return RequestContext.for_caller("http://localhost/fhir", Caller(id=f"ehr-{center}", role=Role.EHR, center=center))


async def kept_rows(db: AsyncDatabase) -> dict[str, dict[str, Any]]:
    return {row["_id"]: row async for row in db[REPORT_ROWS].find()}


async def computed_rows(services: Services) -> dict[str, dict[str, Any]]:
    return {row["_id"]: row for row in await services.store.aggregate(SYSTEM, "Patient", row_pipeline())}


async def assert_parity(services: Services, db: AsyncDatabase, contexts: list[RequestContext]) -> None:
    """The rows kept are the rows computed from the sources; each caller's report from them (as served) is its
    report from the sources (the oracle: the aggregation of the source resources at read time)."""
    assert await kept_rows(db) == await computed_rows(services)
    for ctx in contexts:
        codes = await report_codes(ctx, services.store)
        for filters in (Filters(), Filters(countries=frozenset({"FR"}))):
            oracle = await services.store.aggregate(ctx, "Patient", report_pipeline(filters, codes))
            served = await run_report_pipeline(ctx, services.store, filters, codes)
            assert served == (oracle[0] if oracle else {}), ctx.center


async def of_subject(client: httpx.AsyncClient, resource_type: str, patient_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/fhir/{resource_type}?subject=Patient/{patient_id}&_count=100")
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in parse(response).get("entry", [])]


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    response = await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=fhirjson.dumps(resource),
                                headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text


@pytest.fixture
async def cohort(client: httpx.AsyncClient, services: Services, empty_db: None) -> list[tuple[PatientFacts, str]]:
    return await load_cohort(client, 16, seed=14)


def centers_of(cohort: list[tuple[PatientFacts, str]]) -> list[str]:
    return [center for center, _ in Counter(facts.center for facts, _ in cohort).most_common()]


async def test_rows_kept_by_transaction_bundles_are_the_rows_of_the_sources(
        services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]]) -> None:
    assert len(await kept_rows(db)) == len(cohort)
    await assert_parity(services, db, [SYSTEM, *(ehr(c) for c in centers_of(cohort))])


async def test_rows_follow_updates_moves_of_a_resource_patches_and_deletes(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase,
        cohort: list[tuple[PatientFacts, str]]) -> None:
    ids = [pid for _, pid in cohort]
    # an Observation moved to another patient: both rows change
    moved = (await of_subject(client, "Observation", ids[0]))[0]
    moved["subject"] = {"reference": f"Patient/{ids[1]}"}
    await put(client, moved)
    # a MedicationStatement's start moved by a patch (the imatinib duration changes)
    statement = (await of_subject(client, "MedicationStatement", ids[2]))[0]
    patch = [{"op": "replace", "path": "/effectivePeriod/start", "value": "2000-01-15"}]
    response = await client.patch(f"/fhir/MedicationStatement/{statement['id']}", content=fhirjson.dumps(patch),
                                  headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.text
    # a Condition and a Patient deleted
    condition = (await of_subject(client, "Condition", ids[3]))[0]
    assert (await client.delete(f"/fhir/Condition/{condition['id']}")).status_code in (200, 204)
    assert (await client.delete(f"/fhir/Patient/{ids[4]}")).status_code in (200, 204)
    assert f"Patient/{ids[4]}" not in await kept_rows(db)
    await assert_parity(services, db, [SYSTEM, *(ehr(c) for c in centers_of(cohort))])


async def test_a_patient_moved_to_another_center_counts_for_each_caller_what_it_may_read(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase,
        cohort: list[tuple[PatientFacts, str]]) -> None:
    """An admin moves a Patient: its other resources keep their center until written again
    (``storage/centers.py``), so the new center's clients may not read them; its row is made again at read
    time from what each caller may read."""
    first, second = centers_of(cohort)[:2]
    mover = next(pid for facts, pid in cohort if facts.center == first)
    target = next(pid for facts, pid in cohort if facts.center == second)
    patient = parse(await client.get(f"/fhir/Patient/{mover}"))
    patient["managingOrganization"] = parse(await client.get(f"/fhir/Patient/{target}"))["managingOrganization"]
    await put(client, patient)
    assert (await kept_rows(db))[f"Patient/{mover}"]["foreign"] is True
    await assert_parity(services, db, [SYSTEM, ehr(first), ehr(second)])


async def test_a_rebuild_gives_the_rows_of_data_written_around_the_server(
        services: Services, db: AsyncDatabase, mongo_uri: str, cohort: list[tuple[PatientFacts, str]]) -> None:
    """What ``fhir-server rebuild-report-rows`` runs."""
    await db[REPORT_ROWS].delete_many({})
    assert await kept_rows(db) == {}
    assert await rebuild_rows(mongo_uri, services.settings.mongodb_db) == len(cohort)
    assert await services.store.report_rows.up_to_date()
    await assert_parity(services, db, [SYSTEM, ehr(centers_of(cohort)[0])])



async def test_rows_dropped_while_patients_are_stored_are_rebuilt_at_start(
        services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]]) -> None:
    await db.drop_collection(REPORT_ROWS)
    assert not await services.store.report_rows.up_to_date()
    assert await services.store.report_rows.ensure_built()
    await assert_parity(services, db, [SYSTEM])


async def test_a_rebuild_at_start_with_patients_is_a_warning_naming_how_many(
        services: Services, cohort: list[tuple[PatientFacts, str]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fhir_server.bootstrap"):
        await keep_report_rows(services.store, rebuild=True)
    [record] = [r for r in caplog.records if "per-patient rows" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage().endswith(f": {len(cohort)} patients")


async def test_the_first_start_on_an_empty_database_warns_of_nothing(
        services: Services, empty_db: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fhir_server.bootstrap"):
        await keep_report_rows(services.store, rebuild=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(r.getMessage().endswith(": 0 patients") for r in caplog.records)


async def test_an_ehr_client_reads_only_its_centers_rows(
        services: Services, cohort: list[tuple[PatientFacts, str]]) -> None:
    for center in centers_of(cohort)[:2]:
        async with client_as(services, Caller(id=f"ehr-{center}", role=Role.EHR, center=center)) as http:
            response = await http.get("/fhir/$registry-report")
        assert response.status_code == 200, response.text
        total = flatten(parse(response))[("patients", "", "")][0]
        assert total == sum(1 for facts, _ in cohort if facts.center == center)


def test_the_rows_are_read_with_the_patients_access_filter_and_never_without_one() -> None:
    own = {"center": {"$in": ["FR-POI", None], "$exists": True}}
    filters = ReadFilters(lambda kind: own if kind == "Patient" else {"never": kind}, rows=own)
    assert guarded(REPORT_ROWS, [], filters)[0] == {"$match": own}
    with pytest.raises(UnguardedRead):
        guarded(REPORT_ROWS, [], ReadFilters(lambda kind: {}))


async def test_rows_kept_by_the_bulk_loader_one_batch_for_several_patients(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase,
        cohort: list[tuple[PatientFacts, str]]) -> None:
    """``$import`` and ``fhir-server load`` write batches of many patients' resources in one unit of work."""
    items: list[LoadItem] = []
    copies = []
    for _, pid in cohort[:3]:
        copy = str(uuid.uuid4())
        copies.append(f"Patient/{copy}")
        patient = parse(await client.get(f"/fhir/Patient/{pid}"))
        patient["id"] = copy
        for identifier in patient.get("identifier", []):
            identifier["value"] = f"{identifier['value']}-copy"
        items.append(LoadItem(len(items) + 1, patient))
        for kind in ("Observation", "Condition", "MedicationStatement"):
            for resource in await of_subject(client, kind, pid):
                resource["id"] = str(uuid.uuid4())
                resource["subject"] = {"reference": f"Patient/{copy}"}
                items.append(LoadItem(len(items) + 1, resource))
    results = await load_batch(SYSTEM, services, items)
    assert not [r for r in results if r.failed], [r.issues for r in results if r.failed]
    assert set(copies) <= set(await kept_rows(db))
    await assert_parity(services, db, [SYSTEM])


@pytest.fixture
def row_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """The pipelines the row refresh runs (``ReportRows._rows``), in order."""
    seen: list[list[dict[str, Any]]] = []
    original = ReportRows._rows

    async def recorded(self: ReportRows, pipeline: list[dict[str, Any]], session: Any) -> dict[str, Any]:
        seen.append(pipeline)
        return await original(self, pipeline, session)

    monkeypatch.setattr(ReportRows, "_rows", recorded)
    return seen


def concept_of(observation: Any) -> str:
    return next((c["code"] for c in observation["code"]["coding"] if c["system"] == CONCEPTS), "")


def reads_collections(pipeline: list[dict[str, Any]]) -> bool:
    return any("$lookup" in stage for stage in pipeline)


def new_patient_bundle(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The transaction Bundle of synthetic patient ``index`` (after the cohort's 16) and its Patient entry."""
    bundle, _ = list(registry_cohort(index, seed=14))[-1]
    return bundle, next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


async def transact(client: httpx.AsyncClient, bundle: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/fhir", content=fhirjson.dumps(bundle), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    return parse(response)


async def test_the_rows_of_patients_a_bundle_creates_are_made_from_its_own_writes(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]],
        row_reads: list[list[dict[str, Any]]]) -> None:
    """A Patient created with an id the server chose cannot be named by anything stored before: its row is made
    from the Bundle's documents, no collection read. They go in as literals: a ``$$`` string stays a string."""
    bundle, patient_entry = new_patient_bundle(17)
    patient_entry["resource"]["identifier"][0]["value"] = "$$NOT-A-VARIABLE"
    patient_entry["request"]["ifNoneExist"] = f"identifier={patient_entry['resource']['identifier'][0]['system']}|"
    patient_entry["request"]["ifNoneExist"] += "$$NOT-A-VARIABLE"
    result = await transact(client, bundle)
    assert row_reads and not any(map(reads_collections, row_reads))
    sent = [d["d"]["resource"] for d in row_reads[0][0]["$documents"]["$literal"] if d["c"] == "Observation"]
    submitted = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(sent) < len(submitted)  # the lab results make no row: not sent
    assert sorted(concept_of(o) for o in sent) == sorted(
        concept_of(o) for o in submitted if concept_of(o) in ROW_OBSERVATION_CODES)
    patient_id = result["entry"][1]["response"]["location"].split("Patient/")[1].split("/")[0]
    assert f"Patient/{patient_id}" in await kept_rows(db)
    stored = parse(await client.get(f"/fhir/Patient/{patient_id}"))
    assert stored["identifier"][0]["value"] == "$$NOT-A-VARIABLE"
    await assert_parity(services, db, [SYSTEM, *(ehr(c) for c in centers_of(cohort))])


async def test_a_bundle_adding_to_a_stored_patient_reads_that_patients_sources(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]],
        row_reads: list[list[dict[str, Any]]]) -> None:
    """A new Patient's row from the Bundle, the row of a stored Patient it adds an Observation to (an absolute
    reference) from the collections: that Patient's other resources are not in the Bundle."""
    bundle, _ = new_patient_bundle(18)
    stored_patient = cohort[0][1]
    added = (await of_subject(client, "Observation", stored_patient))[0]
    for key in ("id", "meta", "identifier"):
        added.pop(key, None)
    added["subject"] = {"reference": f"http://testserver/fhir/Patient/{stored_patient}"}
    bundle["entry"].append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": added,
                            "request": {"method": "POST", "url": "Observation"}})
    await transact(client, bundle)
    assert sorted(map(reads_collections, row_reads)) == [False, True]
    await assert_parity(services, db, [SYSTEM, *(ehr(c) for c in centers_of(cohort))])


async def test_a_patient_created_with_the_clients_id_has_its_row_made_from_the_collections(
        client: httpx.AsyncClient, services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]],
        row_reads: list[list[dict[str, Any]]]) -> None:
    """An id the client chose (update as create) may already be named by stored resources."""
    chosen = str(uuid.uuid4())
    bundle, patient_entry = new_patient_bundle(19)
    text = fhirjson.dumps(bundle).decode().replace(patient_entry["fullUrl"], f"http://testserver/fhir/Patient/{chosen}")
    bundle = fhirjson.loads(text)
    patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient_entry["resource"]["id"] = chosen
    patient_entry["request"] = {"method": "PUT", "url": f"Patient/{chosen}"}
    await transact(client, bundle)
    assert row_reads and all(map(reads_collections, row_reads))
    assert f"Patient/{chosen}" in await kept_rows(db)
    await assert_parity(services, db, [SYSTEM, *(ehr(c) for c in centers_of(cohort))])


async def test_an_observation_ruled_out_of_the_rows_is_one_the_rows_observation_stages_drop(
        services: Services, db: AsyncDatabase, cohort: list[tuple[PatientFacts, str]]) -> None:
    """``may_make_a_row`` leaves an Observation out of the documents a row is made from only when the rows'
    own Observation stages would drop it: each stored Observation run through those stages alone."""
    kept = dropped = 0
    async for document in db["Observation"].find():
        document.pop("_id")
        out = [row async for row in await db.aggregate(
            [{"$documents": {"$literal": [document]}}, *observation_stages()])]
        if may_make_a_row("Observation", document):
            kept += 1
        else:
            assert out == [], document["resource"]["code"]
            dropped += 1
    assert kept and dropped  # the cohort holds both kinds
