"""References between the entries of a transaction (https://hl7.org/fhir/R4/bundle.html#references,
https://hl7.org/fhir/R4/http.html#trules): an entry is named by its fullUrl, written absolute or relative to the
base of the referring entry's fullUrl, and every reference that names it is rewritten to what it writes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.test_bundles import _entry, _observation, _submit
from tests.conftest import BASE, parse, patient, post, put, unique

EXTERNAL = "http://example.com/fhir"  # the sender's base, not this server's


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _stored_id(response: dict[str, Any], index: int) -> str:
    return str(response["entry"][index]["response"]["location"].split("/")[-3])


async def _committed(client: httpx.AsyncClient, bundle: dict[str, Any]) -> dict[str, Any]:
    r = await _submit(client, bundle)
    assert r.status_code == 200, r.text
    return dict(parse(r))


async def _subject(client: httpx.AsyncClient, response: dict[str, Any], index: int) -> str:
    observation = parse(await client.get(f"/fhir/Observation/{_stored_id(response, index)}"))
    return str(observation["subject"]["reference"])


async def test_transaction_rewrites_relative_reference_to_absolute_full_url_entry(client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    response = await _committed(client, _transaction(
        _entry(patient(unique()), "POST", "Patient", f"{EXTERNAL}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}", unique()), "POST", "Observation", f"{EXTERNAL}/Observation/{unique()}")))
    patient_id = _stored_id(response, 0)
    assert patient_id != zz9
    assert await _subject(client, response, 1) == f"Patient/{patient_id}"


async def test_transaction_rewrites_absolute_reference_to_full_url_entry(client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    response = await _committed(client, _transaction(
        _entry(_observation(f"{EXTERNAL}/Patient/{zz9}", unique()), "POST", "Observation", _urn()),
        _entry(patient(unique()), "POST", "Patient", f"{EXTERNAL}/Patient/{zz9}")))
    assert await _subject(client, response, 0) == f"Patient/{_stored_id(response, 1)}"


async def test_relative_reference_to_an_entry_does_not_reach_a_stored_resource_of_that_id(
        client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    assert (await put(client, f"Patient/{zz9}", patient(unique(), id=zz9))).status_code == 201  # unrelated
    response = await _committed(client, _transaction(
        _entry(patient(unique()), "POST", "Patient", f"{EXTERNAL}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}", unique()), "POST", "Observation", f"{EXTERNAL}/Observation/{unique()}")))
    assert await _subject(client, response, 1) == f"Patient/{_stored_id(response, 0)}" != f"Patient/{zz9}"


async def test_transaction_rewrites_reference_to_entry_with_the_servers_own_base(client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    response = await _committed(client, _transaction(
        _entry(patient(unique()), "POST", "Patient", f"{BASE}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}", unique()), "POST", "Observation", _urn()),
        _entry(_observation(f"{BASE}/Patient/{zz9}", unique()), "POST", "Observation")))
    patient_id = _stored_id(response, 0)
    assert await _subject(client, response, 1) == f"Patient/{patient_id}"
    assert await _subject(client, response, 2) == f"Patient/{patient_id}"


async def test_reference_to_a_put_entry_becomes_the_id_of_its_request_url(client: httpx.AsyncClient) -> None:
    zz9, mine = unique("zz9-"), unique("mine-")
    response = await _committed(client, _transaction(
        _entry(patient(unique(), id=mine), "PUT", f"Patient/{mine}", f"{EXTERNAL}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}", unique()), "POST", "Observation", f"{EXTERNAL}/Observation/{unique()}")))
    assert await _subject(client, response, 1) == f"Patient/{mine}"


async def test_relative_reference_in_a_urn_uuid_entry_is_relative_to_the_server(client: httpx.AsyncClient) -> None:
    # bundle.html#references: no RESTful fullUrl to take a base from -> the server's base; the entry whose
    # fullUrl has another base is not what Patient/<id> names here
    stored = parse(await post(client, "Patient", patient(unique())))
    response = await _committed(client, _transaction(
        _entry(patient(unique()), "POST", "Patient", f"{EXTERNAL}/Patient/{stored['id']}"),
        _entry(_observation(f"Patient/{stored['id']}", unique()), "POST", "Observation", _urn())))
    assert await _subject(client, response, 1) == f"Patient/{stored['id']}"


async def test_relative_reference_naming_no_entry_is_the_servers_resource(client: httpx.AsyncClient) -> None:
    # http.html#trules: the server stands in for a base it has no mapping for
    stored = parse(await post(client, "Patient", patient(unique())))
    response = await _committed(client, _transaction(
        _entry(_observation(f"Patient/{stored['id']}", unique()), "POST", "Observation",
               f"{EXTERNAL}/Observation/{unique()}")))
    assert await _subject(client, response, 0) == f"Patient/{stored['id']}"


async def test_versioned_reference_to_a_created_entry_names_its_first_version(client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    response = await _committed(client, _transaction(
        _entry(patient(unique()), "POST", "Patient", f"{EXTERNAL}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}/_history/1", unique()), "POST", "Observation",
               f"{EXTERNAL}/Observation/{unique()}")))
    assert await _subject(client, response, 1) == f"Patient/{_stored_id(response, 0)}/_history/1"


def _versioned_update(existing: dict[str, Any], observation_id: str) -> dict[str, Any]:
    """An update of ``existing`` (sent back with the meta it was read with) and an Observation naming its version."""
    observation = {**_observation(f"{EXTERNAL}/Patient/{existing['id']}/_history/1", observation_id),
                   "id": observation_id}
    return _transaction(
        _entry({**existing, "active": True}, "PUT", f"Patient/{existing['id']}",
               f"{EXTERNAL}/Patient/{existing['id']}"),
        _entry(observation, "PUT", f"Observation/{observation_id}", _urn()))


async def test_versioned_reference_to_an_updated_entry_names_the_version_it_stores(client: httpx.AsyncClient) -> None:
    existing = parse(await post(client, "Patient", patient(unique())))
    observation_id = unique("obs-")
    await _committed(client, _versioned_update(existing, observation_id))
    subject = parse(await client.get(f"/fhir/Observation/{observation_id}"))["subject"]["reference"]
    assert subject == f"Patient/{existing['id']}/_history/2"
    assert parse(await client.get(f"/fhir/{subject}"))["active"] is True


async def test_replayed_transaction_with_a_versioned_reference_stores_nothing_new(client: httpx.AsyncClient) -> None:
    existing = parse(await post(client, "Patient", patient(unique())))
    observation_id = unique("obs-")
    bundle = _versioned_update(existing, observation_id)
    first = await _committed(client, bundle)
    again = await _committed(client, bundle)
    assert [e["response"]["location"] for e in again["entry"]] == [e["response"]["location"] for e in first["entry"]]
    subject = parse(await client.get(f"/fhir/Observation/{observation_id}"))["subject"]["reference"]
    assert subject == f"Patient/{existing['id']}/_history/2"


async def test_versioned_reference_to_another_version_of_an_updated_entry_keeps_it(client: httpx.AsyncClient) -> None:
    # the entry carries version 2; _history/1 is not its content but the earlier version the server knows
    existing = parse(await post(client, "Patient", patient(unique())))
    existing = parse(await put(client, f"Patient/{existing['id']}", {**existing, "gender": "male"}))
    observation_id = unique("obs-")
    await _committed(client, _versioned_update(existing, observation_id))
    subject = parse(await client.get(f"/fhir/Observation/{observation_id}"))["subject"]["reference"]
    assert subject == f"Patient/{existing['id']}/_history/1"
    assert parse(await client.get(f"/fhir/{subject}"))["gender"] == "female"


async def test_versioned_reference_to_another_version_of_a_created_entry_is_400(client: httpx.AsyncClient) -> None:
    zz9 = unique("zz9-")
    r = await _submit(client, _transaction(
        _entry(patient(unique(), meta={"versionId": "3"}), "POST", "Patient", f"{EXTERNAL}/Patient/{zz9}"),
        _entry(_observation(f"Patient/{zz9}/_history/1", unique()), "POST", "Observation",
               f"{EXTERNAL}/Observation/{unique()}")))
    assert r.status_code == 400, r.text
    assert parse(r)["issue"][0]["expression"] == ["Bundle.entry[1]"]


async def test_versioned_reference_the_transaction_cannot_keep_fails_it(client: httpx.AsyncClient) -> None:
    # The Patient's own versioned reference, once rewritten, makes it identical to what is stored (no new
    # version), so the version promised to the Observation's reference would not exist: 409, nothing stored.
    org = parse(await post(client, "Organization", {"resourceType": "Organization", "name": "v1"}))
    org = parse(await put(client, f"Organization/{org['id']}", {**org, "name": "v2"}))
    existing = parse(await post(client, "Patient", patient(
        unique(), managingOrganization={"reference": f"Organization/{org['id']}/_history/3"})))
    observation_id = unique("obs-")
    r = await _submit(client, _transaction(
        _entry({**org, "name": "v3"}, "PUT", f"Organization/{org['id']}", f"{BASE}/Organization/{org['id']}"),
        _entry({**existing, "managingOrganization": {"reference": f"Organization/{org['id']}/_history/2"}}, "PUT",
               f"Patient/{existing['id']}", f"{BASE}/Patient/{existing['id']}"),
        _entry({**_observation(f"Patient/{existing['id']}/_history/1", unique()), "id": observation_id}, "PUT",
               f"Observation/{observation_id}")))
    assert r.status_code == 409, r.text
    assert (await client.get(f"/fhir/Observation/{observation_id}")).status_code == 404
    assert parse(await client.get(f"/fhir/Organization/{org['id']}"))["name"] == "v2"


# http.html#trules: "Servers SHALL replace all matching links in the bundle, whether they are found in the resource
# ids, resource references, elements of type uri, url, oid, uuid, and <a href="" & <img src="" in the narrative.
# Elements of type canonical are not replaced."

def _document(binary_url: str, *extensions: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {"resourceType": "DocumentReference", "status": "current", "content": [
        {"attachment": {"contentType": "text/plain", "url": binary_url}}]}
    if extensions:
        document["extension"] = list(extensions)
    return document


def _binary() -> dict[str, Any]:
    return {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}


async def _stored(client: httpx.AsyncClient, response: dict[str, Any], index: int, resource_type: str
                  ) -> dict[str, Any]:
    return dict(parse(await client.get(f"/fhir/{resource_type}/{_stored_id(response, index)}")))


async def test_an_attachment_url_naming_an_entry_becomes_its_type_and_id(client: httpx.AsyncClient) -> None:
    binary = _urn()
    response = await _committed(client, _transaction(
        _entry(_document(binary), "POST", "DocumentReference", _urn()),
        _entry(_binary(), "POST", "Binary", binary)))
    document = await _stored(client, response, 0, "DocumentReference")
    assert document["content"][0]["attachment"]["url"] == f"Binary/{_stored_id(response, 1)}"


async def test_a_uri_extension_naming_an_entry_is_rewritten_and_a_canonical_is_not(client: httpx.AsyncClient) -> None:
    binary = _urn()
    response = await _committed(client, _transaction(
        _entry(_binary(), "POST", "Binary", binary),
        _entry(_document("http://example.com/file.txt",
                         {"url": "http://example.com/ext/uri", "valueUri": binary},
                         {"url": "http://example.com/ext/canonical", "valueCanonical": binary}),
               "POST", "DocumentReference", _urn())))
    document = await _stored(client, response, 1, "DocumentReference")
    assert [e.get("valueUri") or e.get("valueCanonical") for e in document["extension"]] == [
        f"Binary/{_stored_id(response, 0)}", binary]


async def test_narrative_links_naming_an_entry_are_rewritten(client: httpx.AsyncClient) -> None:
    binary, observation = _urn(), _urn()
    div = (f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{observation}">result</a> '
           f"<img src='{binary}'/> <a href=\"urn:uuid:{uuid.uuid4()}\">elsewhere</a></div>")
    response = await _committed(client, _transaction(
        _entry(patient(unique(), text={"status": "generated", "div": div}), "POST", "Patient", _urn()),
        _entry(_binary(), "POST", "Binary", binary),
        _entry(_observation("Patient/unknown", unique()), "POST", "Observation", observation)))
    stored = await _stored(client, response, 0, "Patient")
    expected = (div.replace(observation, f"Observation/{_stored_id(response, 2)}")
                .replace(binary, f"Binary/{_stored_id(response, 1)}"))
    assert stored["text"]["div"] == expected


async def test_a_string_holding_an_entrys_full_url_is_kept(client: httpx.AsyncClient) -> None:
    """Identifier.value is a string: a sender's identifier that happens to be an entry's urn stays as sent."""
    document = _urn()
    sender_identifier = {"system": "urn:ietf:rfc:3986", "value": document}
    response = await _committed(client, _transaction(
        _entry(patient(unique()) | {"identifier": [sender_identifier]}, "POST", "Patient", _urn()),
        _entry(_document("http://example.com/file.txt"), "POST", "DocumentReference", document)))
    assert (await _stored(client, response, 0, "Patient"))["identifier"] == [sender_identifier]
