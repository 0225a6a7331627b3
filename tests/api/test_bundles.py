"""transaction and batch Bundles (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, post, unique

PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"
RECORD_SYSTEM = "https://cml-registry.eu/fhir/sid/record"


def _entry(resource: dict[str, Any], method: str, url: str, full_url: str | None = None,
           **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url, **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _observation(subject: str, record: str, value: float = 7.5) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": RECORD_SYSTEM, "value": record}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
            "subject": {"reference": subject}, "valueQuantity": {"value": value, "unit": "10*9/L"}}


def _patient_bundle(pseudonym: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(pseudonym), "POST", "Patient", "urn:uuid:11111111-1111-4111-8111-111111111111",
               ifNoneExist=f"identifier={PATIENT_SYSTEM}|{pseudonym}"),
        _entry(_observation("urn:uuid:11111111-1111-4111-8111-111111111111", f"{pseudonym}/1"), "POST",
               "Observation", "urn:uuid:22222222-2222-4222-8222-222222222222",
               ifNoneExist=f"identifier={RECORD_SYSTEM}|{pseudonym}/1"),
    ]}


async def _submit(client: httpx.AsyncClient, bundle: dict[str, Any]) -> httpx.Response:
    return await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})


async def test_transaction_creates_and_rewrites_urn_uuid_references(client: httpx.AsyncClient) -> None:
    r = await _submit(client, _patient_bundle(unique()))
    assert r.status_code == 200, r.text
    response = parse(r)
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_location = response["entry"][0]["response"]["location"]
    patient_id = patient_location.split("/")[-3]
    obs_id = response["entry"][1]["response"]["location"].split("/")[-3]
    obs = parse(await client.get(f"/fhir/Observation/{obs_id}"))
    assert obs["subject"]["reference"] == f"Patient/{patient_id}"
    assert response["entry"][0]["response"]["etag"] == 'W/"1"'


async def test_replayed_transaction_creates_nothing_new(client: httpx.AsyncClient) -> None:
    bundle = _patient_bundle(unique())
    first = parse(await _submit(client, bundle))
    second = parse(await _submit(client, bundle))
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK", "200 OK"]
    assert [e["response"]["location"] for e in second["entry"]] == [e["response"]["location"] for e in first["entry"]]


async def test_concurrent_replays_of_a_transaction_create_one_of_each(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    bundle = _patient_bundle(pseudonym)
    responses = await asyncio.gather(*[_submit(client, bundle) for _ in range(8)])
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert len(found["entry"]) == 1
    observations = parse(await client.get(f"/fhir/Observation?identifier={RECORD_SYSTEM}|{pseudonym}/1"))
    assert len(observations["entry"]) == 1


async def test_transaction_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    bundle = _patient_bundle(pseudonym)
    bundle["entry"].append(_entry({"resourceType": "Observation", "status": "not-a-status",
                                   "code": {"text": "x"}}, "POST", "Observation"))
    r = await _submit(client, bundle)
    assert r.status_code == 400
    outcome = parse(r)
    assert any("Bundle.entry[2]" in (i.get("expression") or [""])[0] for i in outcome["issue"])
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert found.get("entry", []) == []


async def test_transaction_failing_precondition_rolls_back_earlier_entries(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    existing = parse(await post(client, "Patient", patient(unique())))
    bundle = _patient_bundle(pseudonym)
    bundle["entry"].append(_entry({**existing, "gender": "male"}, "PUT", f"Patient/{existing['id']}",
                                  ifMatch='W/"7"'))
    r = await _submit(client, bundle)
    assert r.status_code == 412
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert found.get("entry", []) == []


async def test_transaction_resolves_conditional_reference_to_stored_resource(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    stored = parse(await post(client, "Patient", patient(pseudonym)))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(_observation(f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}", f"{pseudonym}/9"), "POST",
               "Observation")]}
    response = parse(await _submit(client, bundle))
    obs_id = response["entry"][0]["response"]["location"].split("/")[-3]
    obs = parse(await client.get(f"/fhir/Observation/{obs_id}"))
    assert obs["subject"]["reference"] == f"Patient/{stored['id']}"


async def test_transaction_resolves_conditional_reference_to_entry_of_same_bundle(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(pseudonym), "POST", "Patient", ifNoneExist=f"identifier={PATIENT_SYSTEM}|{pseudonym}"),
        _entry(_observation(f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}", f"{pseudonym}/2"), "POST",
               "Observation")]}
    response = parse(await _submit(client, bundle))
    patient_id = response["entry"][0]["response"]["location"].split("/")[-3]
    obs_id = response["entry"][1]["response"]["location"].split("/")[-3]
    assert parse(await client.get(f"/fhir/Observation/{obs_id}"))["subject"]["reference"] == f"Patient/{patient_id}"


async def test_conditional_reference_matching_nothing_fails_the_transaction(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(unique()), "POST", "Patient"),
        _entry(_observation(f"Patient?identifier={PATIENT_SYSTEM}|{unique()}", unique()), "POST", "Observation")]}
    r = await _submit(client, bundle)
    assert r.status_code == 404
    [issue] = parse(r)["issue"]
    assert issue["expression"] == ["Bundle.entry[1]"]  # the entry that holds the reference
    assert "matches no resource" in issue["diagnostics"]


async def test_unknown_urn_uuid_reference_is_400(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(_observation("urn:uuid:99999999-9999-4999-8999-999999999999", unique()), "POST", "Observation")]}
    r = await _submit(client, bundle)
    assert r.status_code == 400


async def test_two_changes_of_one_resource_fail_the_transaction(client: httpx.AsyncClient) -> None:
    existing = parse(await post(client, "Patient", patient(unique())))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry({**existing, "gender": "male"}, "PUT", f"Patient/{existing['id']}"),
        _entry({**existing, "gender": "other"}, "PUT", f"Patient/{existing['id']}")]}
    r = await _submit(client, bundle)
    assert r.status_code == 400
    assert parse(await client.get(f"/fhir/Patient/{existing['id']}"))["meta"]["versionId"] == "1"


async def test_transaction_processes_delete_before_post_and_get_last(client: httpx.AsyncClient) -> None:
    doomed = parse(await post(client, "Patient", patient(unique())))
    pseudonym = unique()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"}},
        _entry(patient(pseudonym), "POST", "Patient"),
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    ]}
    response = parse(await _submit(client, bundle))
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["200 OK", "201 Created", "204 No Content"]
    assert len(response["entry"][0]["resource"]["entry"]) == 1  # the GET saw the POST
    assert (await client.get(f"/fhir/Patient/{doomed['id']}")).status_code == 410


async def test_transaction_put_and_patch_entries(client: httpx.AsyncClient) -> None:
    existing = parse(await post(client, "Patient", patient(unique())))
    other = parse(await post(client, "Patient", patient(unique())))
    patch_doc = base64.b64encode(b'[{"op":"replace","path":"/gender","value":"male"}]').decode()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry({**existing, "active": True}, "PUT", f"Patient/{existing['id']}", ifMatch='W/"1"'),
        _entry({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch_doc},
               "PATCH", f"Patient/{other['id']}")]}
    response = parse(await _submit(client, bundle))
    assert [e["response"]["status"] for e in response["entry"]] == ["200 OK", "200 OK"]
    assert parse(await client.get(f"/fhir/Patient/{existing['id']}"))["active"] is True
    assert parse(await client.get(f"/fhir/Patient/{other['id']}"))["gender"] == "male"


async def test_batch_runs_entries_independently(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        _entry(patient(pseudonym), "POST", "Patient"),
        _entry({"resourceType": "Patient", "birthDate": "never"}, "POST", "Patient"),
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
    ]}
    r = await _submit(client, bundle)
    assert r.status_code == 200
    response = parse(r)
    assert response["type"] == "batch-response"
    assert [e["response"]["status"].split()[0] for e in response["entry"]] == ["201", "400", "404"]
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert len(found["entry"]) == 1


async def test_bundle_of_other_type_is_400(client: httpx.AsyncClient) -> None:
    r = await _submit(client, {"resourceType": "Bundle", "type": "collection", "entry": []})
    assert r.status_code == 400


async def test_entry_without_request_is_400(client: httpx.AsyncClient) -> None:
    r = await _submit(client, {"resourceType": "Bundle", "type": "transaction",
                               "entry": [{"resource": patient(unique())}]})
    assert r.status_code == 400
    assert parse(r)["issue"][0]["expression"] == ["Bundle.entry[0].request"]


async def test_transaction_get_with_current_if_none_match_is_304(client: httpx.AsyncClient) -> None:
    existing = parse(await post(client, "Patient", patient(unique())))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}", "ifNoneMatch": 'W/"1"'}},
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}", "ifNoneMatch": 'W/"0"'}}]}
    response = parse(await _submit(client, bundle))
    assert [e["response"]["status"] for e in response["entry"]] == ["304 Not Modified", "200 OK"]
    assert "resource" not in response["entry"][0] and response["entry"][1]["resource"]["id"] == existing["id"]


async def _update_then_get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """A transaction that sets ``active`` on a stored Patient, then GETs ``Patient/<id>`` + ``path``."""
    existing = parse(await post(client, "Patient", patient(unique())))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry({**existing, "active": True}, "PUT", f"Patient/{existing['id']}"),
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}{path}"}}]}
    r = await _submit(client, bundle)
    assert r.status_code == 200, r.text
    response = parse(r)
    assert [e["response"]["status"] for e in response["entry"]] == ["200 OK", "200 OK"]
    return response["entry"][1]["resource"]


async def test_transaction_get_of_a_version_sees_the_transactions_own_write(client: httpx.AsyncClient) -> None:
    assert (await _update_then_get(client, "/_history/2"))["active"] is True


async def test_transaction_get_of_a_history_sees_the_transactions_own_write(client: httpx.AsyncClient) -> None:
    history = await _update_then_get(client, "/_history")
    assert history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert history["entry"][0]["resource"]["active"] is True


async def test_transaction_get_of_the_history_of_a_resource_it_creates_lists_its_first_version(
        client: httpx.AsyncClient) -> None:
    new_id = unique("tx-history-")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(unique(), id=new_id), "PUT", f"Patient/{new_id}"),
        {"request": {"method": "GET", "url": f"Patient/{new_id}/_history"}}]}
    r = await _submit(client, bundle)
    assert r.status_code == 200, r.text
    response = parse(r)
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "200 OK"]
    assert [e["resource"]["id"] for e in response["entry"][1]["resource"]["entry"]] == [new_id]


async def test_transaction_conditional_update_with_conflicting_id_is_400(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    existing = parse(await post(client, "Patient", patient(pseudonym)))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(pseudonym, id="other-id", active=True), "PUT",
               f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}")]}
    r = await _submit(client, bundle)
    assert r.status_code == 400, r.text
    assert "active" not in parse(await client.get(f"/fhir/Patient/{existing['id']}"))


async def test_conditional_delete_and_put_of_one_resource_fail_the_transaction(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    existing = parse(await post(client, "Patient", patient(pseudonym)))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"}},
        _entry({**existing, "active": True}, "PUT", f"Patient/{existing['id']}")]}
    r = await _submit(client, bundle)
    assert r.status_code == 400, r.text
    assert (await client.get(f"/fhir/Patient/{existing['id']}")).status_code == 200


async def test_transaction_get_of_a_deleted_resource_fails_the_transaction(client: httpx.AsyncClient) -> None:
    doomed = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{doomed['id']}")
    pseudonym = unique()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _entry(patient(pseudonym), "POST", "Patient"),
        {"request": {"method": "GET", "url": f"Patient/{doomed['id']}"}}]}
    r = await _submit(client, bundle)
    assert r.status_code == 410
    assert parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}")).get("entry", []) == []


async def test_batch_get_of_a_deleted_resource_is_a_410_entry(client: httpx.AsyncClient) -> None:
    doomed = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{doomed['id']}")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{doomed['id']}"}}]}
    response = parse(await _submit(client, bundle))
    assert response["entry"][0]["response"]["status"].startswith("410")


async def test_a_transaction_of_updates_reads_what_it_updates_and_refers_to_with_one_query_per_type(
        client: httpx.AsyncClient, monkeypatch: Any) -> None:
    """A transaction updating several stored resources, and referring to several, reads their current versions
    ahead in one query per type (``interactions/priming.py``), not one query per entry: the same answers, the
    same versions stored."""
    from fhir_server.storage.store import ResourceStore

    pseudonyms = [unique() for _ in range(3)]
    stored = []
    for pseudonym in pseudonyms:
        r = await post(client, "Patient", patient(pseudonym))
        assert r.status_code == 201, r.text
        stored.append(parse(r)["id"])
    one_by_one: list[str] = []
    original = ResourceStore.current

    async def counted(self: ResourceStore, ctx: Any, resource_type: str, resource_id: str, session: Any = None) -> Any:
        one_by_one.append(f"{resource_type}/{resource_id}")
        return await original(self, ctx, resource_type, resource_id, session)

    monkeypatch.setattr(ResourceStore, "current", counted)
    entries = [_entry({**patient(p), "id": i, "gender": "male"}, "PUT", f"Patient/{i}")
               for p, i in zip(pseudonyms, stored, strict=True)]
    entries += [_entry({**_observation(f"Patient/{i}", f"{p}/9"), "id": f"obs-{i}"}, "PUT", f"Observation/obs-{i}")
                for p, i in zip(pseudonyms, stored, strict=True)]
    r = await _submit(client, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    assert one_by_one == []
    statuses = [e["response"]["status"] for e in parse(r)["entry"]]
    assert statuses == ["200 OK"] * 3 + ["201 Created"] * 3
    for i in stored:
        assert parse(await client.get(f"/fhir/Patient/{i}"))["meta"]["versionId"] == "2"
        observation = parse(await client.get(f"/fhir/Observation/obs-{i}"))
        assert observation["meta"]["versionId"] == "1" and observation["subject"]["reference"] == f"Patient/{i}"


async def test_a_transaction_updating_one_resource_of_a_type_reads_it_when_asked(
        client: httpx.AsyncClient, monkeypatch: Any) -> None:
    """One id of a type is not read ahead: the read it would save costs as much, and may never be asked."""
    from fhir_server.storage.store import ResourceStore

    r = await post(client, "Patient", patient(pseudonym := unique()))
    ident = parse(r)["id"]
    ahead: list[str] = []
    original = ResourceStore.current_many

    async def counted(self: ResourceStore, ctx: Any, resource_type: str, ids: Any, **kwargs: Any) -> Any:
        ahead.append(resource_type)
        return await original(self, ctx, resource_type, ids, **kwargs)

    monkeypatch.setattr(ResourceStore, "current_many", counted)
    entries = [_entry({**patient(pseudonym), "id": ident, "gender": "male"}, "PUT", f"Patient/{ident}")]
    r = await _submit(client, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    assert ahead == []
    assert parse(await client.get(f"/fhir/Patient/{ident}"))["meta"]["versionId"] == "2"
