"""Preferences and preconditions in batch and transaction entries (https://hl7.org/fhir/R4/http.html#ops,
#transaction-response, #concurrency, #delete): ``Prefer: return`` shapes every write entry, ``request.ifNoneMatch``
guards a PUT entry, ``GET metadata`` reads the CapabilityStatement, a DELETE of what does not exist is 204."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_bundles import PATIENT_SYSTEM, _entry
from tests.conftest import FHIR_JSON, body, parse, patient, post, unique

UNKNOWN_PROFILE = "https://example.org/StructureDefinition/not-known-here"  # stored with a warning


async def _submit(client: httpx.AsyncClient, kind: str, *entries: dict[str, Any], prefer: str | None = None
                  ) -> httpx.Response:
    headers = {"Content-Type": FHIR_JSON, **({"Prefer": prefer} if prefer else {})}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": list(entries)}
    return await client.post("/fhir", content=body(bundle), headers=headers)


async def _entries(client: httpx.AsyncClient, kind: str, *entries: dict[str, Any], prefer: str | None = None
                   ) -> list[dict[str, Any]]:
    r = await _submit(client, kind, *entries, prefer=prefer)
    assert r.status_code == 200, r.text
    return list(parse(r)["entry"])


def _writes(existing: dict[str, Any]) -> list[dict[str, Any]]:
    """A create that validation warns about, an update, a delete and a read."""
    warned = patient(unique(), meta={"profile": [UNKNOWN_PROFILE]})
    return [_entry(warned, "POST", "Patient"),
            _entry({**existing["updated"], "active": True}, "PUT", f"Patient/{existing['updated']['id']}"),
            {"request": {"method": "DELETE", "url": f"Patient/{existing['deleted']['id']}"}},
            {"request": {"method": "GET", "url": f"Patient/{existing['updated']['id']}"}}]


@pytest.fixture
async def existing(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {name: parse(await post(client, "Patient", patient(unique()))) for name in ("updated", "deleted")}


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_without_prefer_write_entries_carry_no_resource(client: httpx.AsyncClient, kind: str,
                                                             existing: dict[str, dict[str, Any]]) -> None:
    created, updated, deleted, read = await _entries(client, kind, *_writes(existing))
    assert "resource" not in created and "resource" not in updated and "resource" not in deleted
    assert created["response"]["outcome"]["issue"][0]["severity"] == "warning"  # what validation said
    assert "outcome" not in updated["response"]
    assert read["resource"]["active"] is True


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_prefer_return_representation_carries_each_stored_resource(client: httpx.AsyncClient, kind: str,
                                                                         existing: dict[str, dict[str, Any]]) -> None:
    created, updated, deleted, read = await _entries(client, kind, *_writes(existing),
                                                     prefer="return=representation")
    assert created["resource"]["id"] == created["response"]["location"].split("/")[-3]
    assert created["resource"]["meta"]["versionId"] == "1"
    assert updated["resource"]["active"] is True and updated["resource"]["meta"]["versionId"] == "2"
    assert "resource" not in deleted
    assert read["resource"]["id"] == existing["updated"]["id"]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_prefer_return_minimal_leaves_status_location_and_etag(client: httpx.AsyncClient, kind: str,
                                                                     existing: dict[str, dict[str, Any]]) -> None:
    created, updated, deleted, read = await _entries(client, kind, *_writes(existing), prefer="return=minimal")
    assert "resource" not in created and "outcome" not in created["response"]
    assert set(updated["response"]) == {"status", "location", "etag", "lastModified"}
    assert deleted["response"]["status"] == "204 No Content"
    assert read["resource"]["id"] == existing["updated"]["id"]  # a read still carries what it read


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_prefer_return_operation_outcome_gives_every_write_an_outcome(
        client: httpx.AsyncClient, kind: str, existing: dict[str, dict[str, Any]]) -> None:
    created, updated, deleted, read = await _entries(client, kind, *_writes(existing),
                                                     prefer="return=OperationOutcome")
    assert created["response"]["outcome"]["issue"][0]["severity"] == "warning"
    assert updated["response"]["outcome"]["issue"][0]["severity"] == "information"
    assert deleted["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert all("resource" not in e for e in (created, updated, deleted))
    assert "outcome" not in read["response"] and read["resource"]["resourceType"] == "Patient"


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_get_metadata_entry_is_the_capability_statement(client: httpx.AsyncClient, kind: str) -> None:
    (entry,) = await _entries(client, kind, {"request": {"method": "GET", "url": "metadata"}})
    assert entry["response"]["status"] == "200 OK"
    assert entry["resource"]["resourceType"] == "CapabilityStatement"
    assert entry["resource"] == parse(await client.get("/fhir/metadata"))


async def test_transaction_put_with_if_none_match_star_of_an_existing_resource_fails_412(
        client: httpx.AsyncClient, existing: dict[str, dict[str, Any]]) -> None:
    pseudonym = unique()
    target = existing["updated"]
    r = await _submit(client, "transaction", _entry(patient(pseudonym), "POST", "Patient"),
                      _entry({**target, "active": True}, "PUT", f"Patient/{target['id']}", ifNoneMatch="*"))
    assert r.status_code == 412, r.text
    assert "active" not in parse(await client.get(f"/fhir/Patient/{target['id']}"))
    assert parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}")).get("entry", []) == []


async def test_batch_put_with_if_none_match_star_creates_a_new_id_and_refuses_an_existing_one(
        client: httpx.AsyncClient, existing: dict[str, dict[str, Any]]) -> None:
    new_id, target = unique("new-"), existing["updated"]
    fresh, taken = await _entries(
        client, "batch", _entry(patient(unique(), id=new_id), "PUT", f"Patient/{new_id}", ifNoneMatch="*"),
        _entry({**target, "active": True}, "PUT", f"Patient/{target['id']}", ifNoneMatch="*"))
    assert fresh["response"]["status"] == "201 Created"
    assert taken["response"]["status"] == "412 Precondition Failed"
    assert "active" not in parse(await client.get(f"/fhir/Patient/{target['id']}"))


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_delete_entry_of_an_id_that_never_existed_is_204(client: httpx.AsyncClient, kind: str) -> None:
    (entry,) = await _entries(client, kind, {"request": {"method": "DELETE", "url": f"Patient/{unique('never-')}"}})
    assert entry["response"]["status"] == "204 No Content"
