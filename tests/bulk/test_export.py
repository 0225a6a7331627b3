"""Bulk Data export over HTTP (Bulk Data Access IG 2.0, export.html), against the real mongod."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.bulk import runner
from fhir_server.resources import CLINICAL_TYPES
from fhir_server.services import Services
from fhir_server.storage import files
from fhir_server.storage.documents import JOBS, now_ms
from tests.bulk import data
from tests.bulk.conftest import (
    ASYNC,
    create,
    download,
    export,
    finish,
    ids,
    job_id_of,
    kickoff,
    local,
    stored_files,
)
from tests.conftest import FHIR_JSON

pytestmark = pytest.mark.usefixtures("empty_db")


async def registry(client: httpx.AsyncClient, n: int = 2) -> dict[str, Any]:
    """An organization, ``n`` patients each with a registration, a lab and a diagnosis."""
    org = await create(client, data.organization())
    patients, observations, conditions = [], [], []
    for i in range(n):
        p = await create(client, data.patient(f"FR-POI-{i:04d}"))
        patients.append(p)
        reason = "toxicity" if i % 2 == 0 else "no-chr-3m"
        observations.append(await create(client, data.registration(p["id"], reason)))
        observations.append(await create(client, data.lab(p["id"])))
        conditions.append(await create(client, data.diagnosis(p["id"])))
    return {"org": org, "patients": patients, "observations": observations, "conditions": conditions}


# -- kick-off ------------------------------------------------------------------------------------------------


async def test_kickoff_answers_202_with_a_status_url(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/$export", headers=ASYNC)
    assert response.status_code == 202
    location = response.headers["content-location"]
    assert location.startswith("http://testserver/fhir/$export-poll-status?_jobId=")
    assert fhirjson.loads(response.content)["resourceType"] == "OperationOutcome"
    await runner.wait(job_id_of(location))


async def test_kickoff_without_prefer_respond_async_is_400(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/$export")
    assert response.status_code == 400
    outcome = fhirjson.loads(response.content)
    assert "respond-async" in outcome["issue"][0]["diagnostics"]
    assert (await bulk.get("/fhir/Patient/$export")).status_code == 400
    assert (await bulk.get("/fhir/Patient/$export", headers={"Prefer": "return=minimal"})).status_code == 400


async def test_kickoff_refuses_a_non_json_accept(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/$export", headers={**ASYNC, "Accept": "application/fhir+xml"})
    assert response.status_code == 406


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
async def test_ndjson_output_format_aliases_are_accepted(bulk: httpx.AsyncClient, fmt: str) -> None:
    location = await kickoff(bulk, f"$export?_type=Patient&_outputFormat={fmt}")
    assert (await finish(bulk, location))["output"] == []


@pytest.mark.parametrize("fmt", ["application/fhir+json", "text/csv", "parquet"])
async def test_unsupported_output_format_is_400(bulk: httpx.AsyncClient, fmt: str) -> None:
    response = await bulk.get("/fhir/$export", params={"_outputFormat": fmt}, headers=ASYNC)
    assert response.status_code == 400
    assert "_outputFormat" in response.text


async def test_unknown_type_and_bad_since_and_bad_type_filter_are_400(bulk: httpx.AsyncClient) -> None:
    for params in ({"_type": "SubscriptionStatus"}, {"_since": "yesterday"}, {"_typeFilter": "Observation"},
                   {"_typeFilter": "Observation?no-such-param=1"}, {"_type": "Patient", "_typeFilter":
                   "Observation?code=1"}, {"patient": "Patient/1"}):
        response = await bulk.get("/fhir/$export", params=params, headers=ASYNC)
        assert response.status_code == 400, (params, response.text)


async def test_lenient_handling_ignores_unsupported_types(bulk: httpx.AsyncClient) -> None:
    await create(bulk, data.patient("FR-POI-0001"))
    response = await bulk.get("/fhir/$export", params={"_type": "Patient,SubscriptionStatus"},
                              headers={"Prefer": "respond-async, handling=lenient"})
    assert response.status_code == 202
    assert "SubscriptionStatus" in response.text  # R4B, not R4: the warning in the OperationOutcome
    files = await download(bulk, await finish(bulk, response.headers["content-location"]))
    assert set(files) == {"Patient"}


async def test_patient_export_outside_the_compartment_is_400(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/Patient/$export", params={"_type": "Organization"}, headers=ASYNC)
    assert response.status_code == 400


# -- status and manifest -------------------------------------------------------------------------------------


async def test_polling_gives_202_with_progress_then_the_manifest(bulk: httpx.AsyncClient,
                                                               gate: asyncio.Event) -> None:
    made = await registry(bulk)
    location = await kickoff(bulk, "$export")
    running = await bulk.get(local(location))
    assert running.status_code == 202
    assert running.headers["x-progress"]
    assert int(running.headers["retry-after"]) > 0
    gate.set()
    manifest = await finish(bulk, location)
    assert manifest["request"] == "http://testserver/fhir/$export"
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert manifest["transactionTime"] >= made["observations"][-1]["meta"]["lastUpdated"]
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert {t: n for t, n in counts.items() if t in CLINICAL_TYPES} == {
        "Patient": 2, "Organization": 1, "Observation": 4, "Condition": 2}


async def test_system_export_contains_exactly_the_stored_resources(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 3)
    files = await export(bulk, "$export")
    assert ids(files["Patient"]) == ids(made["patients"])
    assert ids(files["Observation"]) == ids(made["observations"])
    assert ids(files["Condition"]) == ids(made["conditions"])
    assert ids(files["Organization"]) == {made["org"]["id"]}
    by_id = {r["id"]: r for r in files["Observation"]}
    for stored in made["observations"]:
        assert by_id[stored["id"]] == stored  # meta included, nothing lost


async def test_decimals_keep_their_precision_in_ndjson(bulk: httpx.AsyncClient) -> None:
    p = await create(bulk, data.patient("FR-POI-0001"))
    await create(bulk, data.lab(p["id"], value="1.50"))
    manifest = await finish(bulk, await kickoff(bulk, "$export?_type=Observation"))
    raw = (await bulk.get(local(manifest["output"][0]["url"]))).content
    assert b'"value":1.50' in raw


async def test_a_file_of_many_chunks_downloads_byte_identical(bulk: httpx.AsyncClient, db: AsyncDatabase,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks, so that a few resources make a file of many chunks written in several inserts."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 300)
    monkeypatch.setattr(files, "BUFFER_CHUNKS", 2)
    made = await registry(bulk, n=4)
    status_url = await kickoff(bulk, "$export?_type=Observation")
    [item] = (await finish(bulk, status_url))["output"]
    downloaded = (await bulk.get(local(item["url"]))).content
    [stored] = await db["export.files"].find({"_id": {"$regex": f"^{job_id_of(status_url)}/"}}).to_list()
    assert stored["length"] == len(downloaded)
    assert await db["export.chunks"].count_documents({"files_id": stored["_id"]}) == -(-len(downloaded) // 300) > 4
    driver = await AsyncGridFSBucket(db, bucket_name="export").open_download_stream(stored["_id"])
    assert await driver.read() == downloaded
    by_id = {o["id"]: o for o in made["observations"]}
    lines = downloaded.splitlines(keepends=True)
    assert [fhirjson.loads(line) for line in lines] == [by_id[fhirjson.loads(line)["id"]] for line in lines]
    assert downloaded == b"".join(fhirjson.dumps(fhirjson.loads(line)) + b"\n" for line in lines)


async def test_deleted_resources_are_not_exported(bulk: httpx.AsyncClient) -> None:
    kept = await create(bulk, data.patient("FR-POI-0001"))
    gone = await create(bulk, data.patient("FR-POI-0002"))
    assert (await bulk.delete(f"/fhir/Patient/{gone['id']}")).status_code in (200, 204)
    files = await export(bulk, "$export")
    assert ids(files["Patient"]) == {kept["id"]}


async def test_type_parameter_limits_the_types(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    files = await export(bulk, "$export?_type=Patient,Condition")
    assert set(files) == {"Patient", "Condition"}
    assert ids(files["Condition"]) == ids(made["conditions"])


async def test_since_exports_only_what_changed_after_it(bulk: httpx.AsyncClient) -> None:
    old = await create(bulk, data.patient("FR-POI-0001"))
    await asyncio.sleep(0.01)
    new = await create(bulk, data.patient("FR-POI-0002"))
    since = old["meta"]["lastUpdated"]
    response = await bulk.get("/fhir/$export", params={"_since": since, "_type": "Patient"}, headers=ASYNC)
    assert response.status_code == 202
    files = await download(bulk, await finish(bulk, response.headers["content-location"]))
    assert ids(files["Patient"]) == {new["id"]}


async def test_type_filter_restricts_its_type_only(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 4)
    toxicity = f"Observation?value-concept={data.REASON}|toxicity"
    response = await bulk.get("/fhir/$export", params={"_typeFilter": toxicity}, headers=ASYNC)
    assert response.status_code == 202, response.text
    files = await download(bulk, await finish(bulk, response.headers["content-location"]))
    expected = {o["id"] for o in made["observations"]
                if o.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code") == "toxicity"}
    assert len(expected) == 2
    assert ids(files["Observation"]) == expected
    assert ids(files["Patient"]) == ids(made["patients"])  # no _typeFilter for Patient: all of them


async def test_several_type_filters_of_one_type_are_ored(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 2)
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("_type", "Observation"), ("_typeFilter", f"Observation?value-concept={data.REASON}|toxicity"),
        ("_typeFilter", "Observation?code=http://loinc.org|777-3")]
    response = await bulk.get("/fhir/$export", params=params, headers=ASYNC)
    files = await download(bulk, await finish(bulk, response.headers["content-location"]))
    labs = {o["id"] for o in made["observations"] if "valueQuantity" in o}
    toxic = {o["id"] for o in made["observations"]
             if o.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code") == "toxicity"}
    assert ids(files["Observation"]) == labs | toxic


async def test_post_kickoff_takes_a_parameters_body(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Condition"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}]}
    response = await bulk.post("/fhir/$export", content=fhirjson.dumps(body),
                               headers={**ASYNC, "Content-Type": FHIR_JSON})
    assert response.status_code == 202, response.text
    manifest = await finish(bulk, response.headers["content-location"])
    assert manifest["request"] == "http://testserver/fhir/$export"
    files = await download(bulk, manifest)
    assert ids(files["Condition"]) == ids(made["conditions"])


async def test_large_types_are_split_into_several_files(bulk: httpx.AsyncClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MAX_PER_FILE", 2)
    made = await registry(bulk, 5)
    manifest = await finish(bulk, await kickoff(bulk, "$export?_type=Patient"))
    assert [item["count"] for item in manifest["output"]] == [2, 2, 1]
    files = await download(bulk, manifest)
    assert ids(files["Patient"]) == ids(made["patients"])


# -- levels --------------------------------------------------------------------------------------------------


async def test_patient_level_export_is_the_patient_compartment(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk)
    await create(bulk, {"resourceType": "Observation", "status": "final", "code": {"text": "no subject"}})
    files = await export(bulk, "Patient/$export")
    assert set(files) == {"Patient", "Observation", "Condition"}  # no Organization: outside the compartment
    assert ids(files["Observation"]) == ids(made["observations"])
    assert ids(files["Patient"]) == ids(made["patients"])


async def test_group_level_export_is_limited_to_the_members(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 3)
    member = made["patients"][0]
    group = await create(bulk, {"resourceType": "Group", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/{member['id']}"}},
        {"entity": {"reference": f"Patient/{made['patients'][1]['id']}"}, "inactive": True}]})
    manifest = await finish(bulk, await kickoff(bulk, f"Group/{group['id']}/$export"))
    assert manifest["request"] == f"http://testserver/fhir/Group/{group['id']}/$export"
    files = await download(bulk, manifest)
    ref = f"Patient/{member['id']}"
    assert ids(files["Patient"]) == {member["id"]}
    assert ids(files["Observation"]) == {o["id"] for o in made["observations"] if o["subject"]["reference"] == ref}
    assert ids(files["Condition"]) == {c["id"] for c in made["conditions"] if c["subject"]["reference"] == ref}
    assert ids(files["Group"]) == {group["id"]}  # the Group is in its member's compartment
    assert "Organization" not in files


async def test_group_export_of_an_unknown_group_is_404(bulk: httpx.AsyncClient) -> None:
    response = await bulk.get("/fhir/Group/nope/$export", headers=ASYNC)
    assert response.status_code == 404


# -- cancel, expiry, failures --------------------------------------------------------------------------------


async def test_delete_cancels_a_running_export_and_removes_its_files(
        bulk: httpx.AsyncClient, services: Services, db: AsyncDatabase, gate: asyncio.Event) -> None:
    await registry(bulk)
    location = await kickoff(bulk, "$export")
    job_id = job_id_of(location)
    deleted = await bulk.delete(local(location))
    assert deleted.status_code == 202
    gate.set()
    await runner.wait(job_id)
    assert (await bulk.get(local(location))).status_code == 404
    assert await stored_files(db, job_id) == 0
    assert await db[JOBS].count_documents({"_id": job_id}) == 0


async def test_a_job_cancelled_by_another_process_stops_at_its_next_heartbeat(
        bulk: httpx.AsyncClient, services: Services, db: AsyncDatabase, gate: asyncio.Event) -> None:
    await registry(bulk)
    location = await kickoff(bulk, "$export")
    job_id = job_id_of(location)
    # what a DELETE answered by another server process does: the job document goes, this task runs on
    assert (await db[JOBS].delete_one({"_id": job_id})).deleted_count == 1
    gate.set()
    await runner.wait(job_id)
    assert await stored_files(db, job_id) == 0
    assert (await bulk.get(local(location))).status_code == 404


async def test_delete_of_a_completed_export_removes_its_files(bulk: httpx.AsyncClient, db: AsyncDatabase) -> None:
    await registry(bulk)
    location = await kickoff(bulk, "$export")
    manifest = await finish(bulk, location)
    assert await stored_files(db, job_id_of(location)) > 0
    assert (await bulk.delete(local(location))).status_code == 202
    assert await stored_files(db, job_id_of(location)) == 0
    assert (await bulk.get(local(location))).status_code == 404
    assert (await bulk.get(local(manifest["output"][0]["url"]))).status_code == 404
    assert (await bulk.delete(local(location))).status_code == 404


async def test_an_expired_export_is_404_and_purged(bulk: httpx.AsyncClient, db: AsyncDatabase) -> None:
    await registry(bulk)
    location = await kickoff(bulk, "$export")
    manifest = await finish(bulk, location)
    job_id = job_id_of(location)
    await db[JOBS].update_one({"_id": job_id}, {"$set": {"expires": now_ms() - timedelta(seconds=1)}})
    assert (await bulk.get(local(manifest["output"][0]["url"]))).status_code == 404
    assert (await bulk.get(local(location))).status_code == 404
    assert await stored_files(db, job_id) == 0
    assert await db[JOBS].count_documents({"_id": job_id}) == 0


async def test_expired_jobs_are_swept_at_the_next_kickoff(bulk: httpx.AsyncClient, db: AsyncDatabase) -> None:
    first = await kickoff(bulk, "$export")
    await finish(bulk, first)
    await db[JOBS].update_one({"_id": job_id_of(first)},
                              {"$set": {"expires": now_ms() - timedelta(seconds=1)}})
    await finish(bulk, await kickoff(bulk, "$export"))
    assert await db[JOBS].count_documents({"_id": job_id_of(first)}) == 0


async def test_unknown_or_malformed_job_ids_are_404(bulk: httpx.AsyncClient) -> None:
    assert (await bulk.get("/fhir/$export-poll-status?_jobId=" + "f" * 32)).status_code == 404
    assert (await bulk.get("/fhir/$export-poll-status?_jobId=../../etc")).status_code == 404
    assert (await bulk.get("/fhir/$export-poll-status")).status_code == 404
    assert (await bulk.get("/fhir/_export/" + "f" * 32 + "/files/Patient-1.ndjson")).status_code == 404


async def test_file_names_outside_the_manifest_are_404(bulk: httpx.AsyncClient) -> None:
    await create(bulk, data.patient("FR-POI-0001"))
    location = await kickoff(bulk, "$export")
    await finish(bulk, location)
    base = f"/fhir/_export/{job_id_of(location)}/files/"
    assert (await bulk.get(base + "Patient-1.ndjson")).status_code == 200
    assert (await bulk.get(base + "Patient-2.ndjson")).status_code == 404
    assert (await bulk.get(base + "..%2F..%2Fsecret")).status_code == 404


# -- the patient parameter (export.html#query-parameters) ----------------------------------------------------


async def test_patient_parameter_limits_a_patient_level_export_to_those_compartments(
        bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 3)
    first, second = made["patients"][0]["id"], made["patients"][1]["id"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{first}"}},
        {"name": "patient", "valueReference": {"reference": f"http://testserver/fhir/Patient/{second}"}}]}
    response = await bulk.post("/fhir/Patient/$export", content=fhirjson.dumps(body),
                               headers={**ASYNC, "Content-Type": FHIR_JSON})
    assert response.status_code == 202, response.text
    files = await download(bulk, await finish(bulk, response.headers["content-location"]))
    chosen = {f"Patient/{first}", f"Patient/{second}"}
    assert ids(files["Patient"]) == {first, second}
    assert ids(files["Observation"]) == {o["id"] for o in made["observations"] if o["subject"]["reference"] in chosen}
    assert ids(files["Condition"]) == {c["id"] for c in made["conditions"] if c["subject"]["reference"] in chosen}


async def test_patient_parameter_in_a_get_kickoff(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 2)
    first = made["patients"][0]["id"]
    files = await export(bulk, f"Patient/$export?_type=Patient,Condition&patient=Patient/{first}")
    assert ids(files["Patient"]) == {first}
    assert ids(files["Condition"]) == {c["id"] for c in made["conditions"]
                                       if c["subject"]["reference"] == f"Patient/{first}"}


async def test_patient_parameter_narrows_a_group_export_to_members(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 3)
    first, second, third = (p["id"] for p in made["patients"])
    group = await create(bulk, {"resourceType": "Group", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/{first}"}}, {"entity": {"reference": f"Patient/{second}"}}]})
    files = await export(bulk, f"Group/{group['id']}/$export?_type=Patient&patient=Patient/{second}")
    assert ids(files["Patient"]) == {second}
    outside = await bulk.get(f"/fhir/Group/{group['id']}/$export", params={"patient": f"Patient/{third}"},
                             headers=ASYNC)
    assert outside.status_code == 400, outside.text
    assert f"Patient/{third} not a member" in outside.text


async def test_patient_parameter_naming_an_unknown_patient_or_no_patient_is_400(bulk: httpx.AsyncClient) -> None:
    for value in ("Patient/no-such-patient", "Observation/1", "not a reference"):
        response = await bulk.get("/fhir/Patient/$export", params={"patient": value}, headers=ASYNC)
        assert response.status_code == 400, (value, response.text)
        assert fhirjson.loads(response.content)["issue"][0]["expression"] == ["patient"]


# -- _elements (export.html#query-parameters) -------------------------------------------------------------------


async def test_elements_keeps_the_listed_and_the_mandatory_elements_marked_subsetted(bulk: httpx.AsyncClient) -> None:
    """``Patient.gender`` applies to Patients, ``status`` to every type (an Organization has none: id and meta
    only); an Observation keeps its mandatory ``code`` too. Types nothing is asked of are exported whole."""
    made = await registry(bulk, 1)
    files = await export(bulk, "$export?_type=Patient,Observation,Organization,Condition"
                               "&_elements=Patient.gender,status,Condition.code")
    patient = files["Patient"][0]
    assert set(patient) == {"resourceType", "id", "meta", "gender"}
    assert "SUBSETTED" in [t["code"] for t in patient["meta"]["tag"]]
    for observation in files["Observation"]:
        assert set(observation) == {"resourceType", "id", "meta", "status", "code"}
    assert set(files["Organization"][0]) == {"resourceType", "id", "meta"}
    assert set(files["Condition"][0]) - {"meta"} == {"resourceType", "id", "code", "subject"}  # subject: 1..1
    stored = (await bulk.get(f"/fhir/Patient/{made['patients'][0]['id']}")).json()
    assert "identifier" in stored and "SUBSETTED" not in str(stored["meta"])  # the stored resource is whole


async def test_elements_of_a_type_named_alone_leaves_the_other_types_whole(bulk: httpx.AsyncClient) -> None:
    made = await registry(bulk, 1)
    files = await export(bulk, "$export?_type=Patient,Condition&_elements=Patient.id")
    assert set(files["Patient"][0]) == {"resourceType", "id", "meta"}
    assert files["Condition"][0]["subject"] == made["conditions"][0]["subject"]
    assert "SUBSETTED" not in str(files["Condition"][0].get("meta"))


async def test_elements_below_the_root_or_malformed_is_400(bulk: httpx.AsyncClient) -> None:
    for value in ("Patient.name.family", "name.family", "patient gender", "Patient."):
        response = await bulk.get("/fhir/$export", params={"_elements": value}, headers=ASYNC)
        assert response.status_code == 400, value
        assert response.json()["issue"][0]["expression"] == ["_elements"]
