"""create, read, vread, update, delete (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import httpx

from tests.conftest import FHIR_JSON, parse, patient, post, put, unique


async def test_create_assigns_id_version_and_location(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique()))
    assert r.status_code == 201
    created = parse(r)
    assert created["id"] and created["meta"]["versionId"] == "1"
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].endswith(f"/fhir/Patient/{created['id']}/_history/1")
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    assert "Last-Modified" in r.headers


async def test_a_write_returning_the_resource_names_its_version_in_content_location(
        client: httpx.AsyncClient) -> None:
    """RFC 9110 8.7: the body of a 201 or 200 is the representation of that version of the resource."""
    created = await post(client, "Patient", patient(unique()))
    assert created.headers["Content-Location"] == created.headers["Location"]
    updated = await put(client, f"Patient/{parse(created)['id']}", {**parse(created), "gender": "male"})
    assert updated.headers["Content-Location"].endswith("/_history/2")
    minimal = await post(client, "Patient", patient(unique()), Prefer="return=minimal")
    assert "Content-Location" not in minimal.headers  # no body: nothing to locate


async def test_create_ignores_client_id(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient", patient(unique(), id="client-chosen"))
    assert r.status_code == 201
    assert parse(r)["id"] != "client-chosen"


async def test_read_returns_current_version_with_etag(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.get(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200
    assert parse(r) == created
    assert r.headers["ETag"] == 'W/"1"'


async def test_read_unknown_id_is_404_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    outcome = parse(r)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"


async def test_unknown_type_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Spaceship/1")
    assert r.status_code == 404
    assert parse(r)["issue"][0]["code"] == "not-supported"


async def test_update_creates_new_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    changed = {**created, "gender": "male"}
    r = await put(client, f"Patient/{created['id']}", changed)
    assert r.status_code == 200
    assert parse(r)["meta"]["versionId"] == "2"
    assert r.headers["ETag"] == 'W/"2"'
    assert r.headers["Location"].endswith(f"/Patient/{created['id']}/_history/2")


async def test_update_with_identical_content_stores_no_new_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await put(client, f"Patient/{created['id']}", created)
    assert r.status_code == 200
    assert parse(r)["meta"]["versionId"] == "1"


async def test_update_as_create_with_client_id_is_201(client: httpx.AsyncClient) -> None:
    new_id = unique("pat-")
    r = await put(client, f"Patient/{new_id}", patient(unique(), id=new_id))
    assert r.status_code == 201
    assert parse(r)["id"] == new_id
    assert (await client.get(f"/fhir/Patient/{new_id}")).status_code == 200


async def test_update_with_mismatched_id_is_400(client: httpx.AsyncClient) -> None:
    r = await put(client, "Patient/abc", patient(unique(), id="xyz"))
    assert r.status_code == 400
    assert parse(r)["issue"][0]["expression"] == ["Patient.id"]


async def test_update_without_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    r = await put(client, "Patient/abc", patient(unique()))
    assert r.status_code == 400


async def test_vread_returns_each_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await put(client, f"Patient/{created['id']}", {**created, "gender": "male"})
    v1 = parse(await client.get(f"/fhir/Patient/{created['id']}/_history/1"))
    v2 = parse(await client.get(f"/fhir/Patient/{created['id']}/_history/2"))
    assert v1["gender"] == "female" and v2["gender"] == "male"


async def test_vread_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    assert (await client.get(f"/fhir/Patient/{created['id']}/_history/9")).status_code == 404


async def test_delete_then_read_is_410(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    r = await client.delete(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 204
    assert r.headers["ETag"] == 'W/"2"'
    gone = await client.get(f"/fhir/Patient/{created['id']}")
    assert gone.status_code == 410
    assert parse(gone)["issue"][0]["code"] == "deleted"


async def test_delete_keeps_earlier_versions_readable(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{created['id']}")
    assert (await client.get(f"/fhir/Patient/{created['id']}/_history/1")).status_code == 200
    assert (await client.get(f"/fhir/Patient/{created['id']}/_history/2")).status_code == 410


async def test_delete_twice_is_idempotent(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{created['id']}")
    r = await client.delete(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 204
    history = parse(await client.get(f"/fhir/Patient/{created['id']}/_history"))
    assert len(history["entry"]) == 2


async def test_delete_of_an_id_that_never_existed_is_204(client: httpx.AsyncClient) -> None:
    # http.html#delete: success, "or if the resource does not exist at all", is 200 or 204 (was 404 here)
    never = unique("never-")
    r = await client.delete(f"/fhir/Patient/{never}")
    assert r.status_code == 204 and r.content == b""
    assert (await client.get(f"/fhir/Patient/{never}/_history")).status_code == 404  # no tombstone was stored


async def test_delete_of_an_unknown_type_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/fhir/Spaceship/never-was")).status_code == 404


async def test_update_after_delete_resurrects_with_next_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique())))
    await client.delete(f"/fhir/Patient/{created['id']}")
    r = await put(client, f"Patient/{created['id']}", created)
    assert r.status_code == 201
    assert parse(r)["meta"]["versionId"] == "3"
