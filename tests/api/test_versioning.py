"""Version-aware interactions: If-Match, If-None-Match, If-Modified-Since, Prefer
(https://hl7.org/fhir/R4/http.html#concurrency, #cread, #ops)."""

from __future__ import annotations

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, post, put, unique


async def test_if_match_current_version_updates(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}, **{"If-Match": 'W/"1"'})
    assert r.status_code == 200


async def test_if_match_stale_version_is_412(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    r = await put(client, f"Patient/{created['id']}", {**created, "gender": "other"}, **{"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_if_match_star_updates_what_exists_and_never_creates(client: httpx.AsyncClient) -> None:
    """RFC 9110 13.1.1: ``If-Match: *`` holds when a current version exists: an update that must not create."""
    created = parse(await post(client, "Patient", patient(unique())))
    updated = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}, **{"If-Match": "*"})
    assert updated.status_code == 200 and parse(updated)["meta"]["versionId"] == "2"
    new_id = unique("star-")
    refused = await put(client, f"Patient/{new_id}", {**patient(unique()), "id": new_id}, **{"If-Match": "*"})
    assert refused.status_code == 412
    assert (await client.get(f"/fhir/Patient/{new_id}")).status_code == 404
    assert (await client.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": "*"})).status_code in (200, 204)
    again = await put(client, f"Patient/{created['id']}", {**created, "gender": "other"}, **{"If-Match": "*"})
    assert again.status_code == 412  # deleted: no current version


async def test_if_match_takes_a_list_of_etags(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    path = f"Patient/{created['id']}"
    assert (await put(client, path, {**created, "gender": "male"}, **{"If-Match": 'W/"7", W/"1"'})).status_code == 200
    assert (await put(client, path, {**created, "gender": "other"}, **{"If-Match": 'W/"1", W/"3"'})).status_code == 412


async def test_a_malformed_if_match_is_400(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    for header in ('W/"1', 'W/"abc"', "garbage", 'W/"1",'):
        r = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}, **{"If-Match": header})
        assert r.status_code == 400, header
        assert "Invalid ETag" in parse(r)["issue"][0]["diagnostics"]


async def test_if_match_on_delete_is_not_needed_but_stale_patch_is_412(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    r = await client.patch(f"/fhir/Patient/{created['id']}",
                           content=b'[{"op":"replace","path":"/gender","value":"other"}]',
                           headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 412


async def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(client: httpx.AsyncClient) -> None:
    """RFC 9110 13.1.1: a server MUST NOT perform the method when the If-Match condition is false."""
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    r = await client.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412, r.text
    assert (await client.get(f"/fhir/Patient/{created['id']}")).status_code == 200
    r = await client.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": 'W/"2"'})
    assert r.status_code == 204
    assert (await client.get(f"/fhir/Patient/{created['id']}")).status_code == 410


async def test_delete_with_if_match_of_what_has_no_current_version_is_412(client: httpx.AsyncClient) -> None:
    assert (await client.delete(f"/fhir/Patient/{unique()}", headers={"If-Match": 'W/"1"'})).status_code == 412
    assert (await client.delete(f"/fhir/Patient?identifier=urn:test|{unique()}",
                                headers={"If-Match": 'W/"1"'})).status_code == 412


async def test_conditional_delete_with_a_stale_if_match_is_412(client: httpx.AsyncClient) -> None:
    identifier = unique()
    created = parse(await post(client, "Patient", patient(identifier)))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    criteria = f"identifier=https://cml-registry.eu/fhir/sid/patient|{identifier}"
    assert (await client.delete(f"/fhir/Patient?{criteria}", headers={"If-Match": 'W/"1"'})).status_code == 412
    assert (await client.delete(f"/fhir/Patient?{criteria}", headers={"If-Match": 'W/"2"'})).status_code == 204


async def test_a_transaction_delete_entry_with_a_stale_if_match_fails_the_transaction(
        client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{created['id']}", "ifMatch": 'W/"2"'}}]}
    r = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 412, r.text
    assert (await client.get(f"/fhir/Patient/{created['id']}")).status_code == 200


async def test_patch_with_if_none_match_of_the_current_version_is_412(client: httpx.AsyncClient) -> None:
    """RFC 9110 13.1.2: If-None-Match names the version the client must not change; matching it, nothing changes."""
    created = parse(await post(client, "Patient", patient(unique())))
    patch_body = b'[{"op":"replace","path":"/gender","value":"other"}]'
    r = await client.patch(f"/fhir/Patient/{created['id']}", content=patch_body,
                           headers={"Content-Type": "application/json-patch+json", "If-None-Match": 'W/"1"'})
    assert r.status_code == 412, r.text
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["gender"] == created["gender"]
    r = await client.patch(f"/fhir/Patient/{created['id']}", content=patch_body,
                           headers={"Content-Type": "application/json-patch+json", "If-None-Match": 'W/"7"'})
    assert r.status_code == 200, r.text


async def test_if_none_match_current_etag_is_304(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.get(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    assert r.content == b""


async def test_vread_with_if_none_match_naming_the_version_is_304(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    old = await client.get(f"/fhir/Patient/{created['id']}/_history/1", headers={"If-None-Match": 'W/"1"'})
    assert (old.status_code, old.content, old.headers["ETag"]) == (304, b"", 'W/"1"')
    other = await client.get(f"/fhir/Patient/{created['id']}/_history/1", headers={"If-None-Match": 'W/"2"'})
    assert other.status_code == 200
    assert parse(other)["meta"]["versionId"] == "1"


async def test_if_none_match_old_etag_returns_resource(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    r = await client.get(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 200


async def test_if_none_match_with_an_etag_of_another_form_returns_resource(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.get(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": '"abc", W/"1"'})
    assert r.status_code == 304
    r = await client.get(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": '"abc"'})
    assert r.status_code == 200


async def test_if_modified_since_after_last_update_is_304(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.get(f"/fhir/Patient/{created['id']}",
                         headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert r.status_code == 304


async def test_if_modified_since_before_last_update_returns_resource(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.get(f"/fhir/Patient/{created['id']}",
                         headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status_code == 200


async def test_prefer_return_minimal_has_no_body(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()), Prefer="return=minimal")
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["Location"]


async def test_prefer_return_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()), Prefer="return=OperationOutcome")
    assert r.status_code == 201
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_prefer_return_representation_is_default(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()), Prefer="return=representation")
    assert parse(r)["resourceType"] == "Patient"


async def test_patch_applies_json_patch_as_new_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.patch(f"/fhir/Patient/{created['id']}",
                           content=b'[{"op":"replace","path":"/gender","value":"male"},'
                                   b'{"op":"add","path":"/active","value":true}]',
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200
    patched = parse(r)
    assert patched["gender"] == "male" and patched["active"] is True
    assert patched["meta"]["versionId"] == "2"


async def test_patch_producing_invalid_resource_is_400(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.patch(f"/fhir/Patient/{created['id']}",
                           content=b'[{"op":"add","path":"/birthDate","value":"not-a-date"}]',
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400
    assert (await client.get(f"/fhir/Patient/{created['id']}")).json()["meta"]["versionId"] == "1"


async def test_patch_with_failing_test_op_is_422(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.patch(f"/fhir/Patient/{created['id']}",
                           content=b'[{"op":"test","path":"/gender","value":"male"}]',
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422


async def test_patch_with_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.patch(f"/fhir/Patient/{created['id']}", content=b'[]',
                           headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 415


async def test_patch_changing_id_is_400(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.patch(f"/fhir/Patient/{created['id']}",
                           content=b'[{"op":"replace","path":"/id","value":"other"}]',
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400


async def test_update_with_if_none_match_star_of_an_existing_resource_is_412(client: httpx.AsyncClient) -> None:
    # RFC 9110 13.1.2: If-None-Match: * on a write fails when a current representation exists
    created = parse(await post(client, "Patient", patient(unique())))
    r = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}, **{"If-None-Match": "*"})
    assert r.status_code == 412
    assert parse(r)["resourceType"] == "OperationOutcome"
    assert parse(await client.get(f"/fhir/Patient/{created['id']}"))["gender"] == "female"


async def test_update_with_if_none_match_star_of_a_new_id_creates_it(client: httpx.AsyncClient) -> None:
    new_id = unique("new-")
    r = await put(client, f"Patient/{new_id}", patient(unique(), id=new_id), **{"If-None-Match": "*"})
    assert r.status_code == 201
    assert parse(await client.get(f"/fhir/Patient/{new_id}"))["meta"]["versionId"] == "1"


async def test_update_with_if_none_match_star_of_a_deleted_resource_recreates_it(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{created['id']}")
    r = await put(client, f"Patient/{created['id']}", created, **{"If-None-Match": "*"})
    assert r.status_code == 201


async def test_update_with_if_none_match_of_the_current_etag_is_412(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    stale = await put(client, f"Patient/{created['id']}", {**created, "active": True}, **{"If-None-Match": 'W/"7"'})
    assert stale.status_code == 200
    r = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"}, **{"If-None-Match": 'W/"2"'})
    assert r.status_code == 412


async def test_conditional_update_with_if_none_match_star_of_a_match_is_412(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    await post(client, "Patient", patient(pseudonym))
    r = await put(client, f"Patient?identifier=https://cml-registry.eu/fhir/sid/patient|{pseudonym}",
                  patient(pseudonym, gender="male"), **{"If-None-Match": "*"})
    assert r.status_code == 412
