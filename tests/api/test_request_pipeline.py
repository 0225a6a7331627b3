"""One request pipeline: an HTTP request and a Bundle entry are parsed alike, fail alike, are authorized at one
point and run through the same interactions (https://hl7.org/fhir/R4/http.html, bundle.html#transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, InvalidRequest
from fhir_server.interactions import authorization
from fhir_server.interactions.create import create
from fhir_server.interactions.request import FhirRequest, Interaction
from fhir_server.interactions.unit_of_work import run_in_transaction
from fhir_server.interactions.update import update
from fhir_server.services import Services
from tests.api.test_bundles import PATIENT_SYSTEM, _entry
from tests.conftest import FHIR_JSON, body, parse, patient, post, unique


async def _bundle(client: httpx.AsyncClient, kind: str, *entries: dict[str, Any]) -> httpx.Response:
    return await client.post("/fhir", content=body({"resourceType": "Bundle", "type": kind, "entry": list(entries)}),
                             headers={"Content-Type": FHIR_JSON})


async def _batch(client: httpx.AsyncClient, *entries: dict[str, Any]) -> list[dict[str, Any]]:
    r = await _bundle(client, "batch", *entries)
    assert r.status_code == 200, r.text
    return list(parse(r)["entry"])


def _status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


@pytest.mark.parametrize(("method", "url"), [
    ("POST", "Patient/some-id"), ("GET", "Unknown/some-id"), ("PUT", "Patient"), ("DELETE", "Patient"),
    ("DELETE", "Patient/$validate"), ("GET", "Patient/_search"), ("GET", "Patient/some-id/_history/1/extra"),
    ("GET", "Observation/some-id/Condition"), ("PUT", "Patient/other-id"),
])
async def test_a_batch_entry_fails_as_the_same_http_request_would(client: httpx.AsyncClient, method: str,
                                                                   url: str) -> None:
    resource = patient(unique(), id="some-id")
    over_http = await client.request(method, f"/fhir/{url}", content=body(resource),
                                     headers={"Content-Type": FHIR_JSON})
    [entry] = await _batch(client, _entry(resource, method, url))
    assert over_http.status_code >= 400
    assert _status(entry) == over_http.status_code


async def test_delete_of_an_operation_url_is_405_and_deletes_nothing(client: httpx.AsyncClient) -> None:
    r = await client.delete("/fhir/Patient/$validate")
    assert r.status_code == 405
    assert parse(r)["issue"][0]["code"] == "not-supported"


async def test_a_trailing_slash_redirects_to_the_url_without_it(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/?gender=female")
    assert r.status_code == 307
    assert r.headers["location"].endswith("/fhir/Patient?gender=female")


async def test_another_method_on_a_bulk_file_url_stays_405(client: httpx.AsyncClient) -> None:
    assert (await client.post("/fhir/_export/some-job/files/Patient-1.ndjson")).status_code == 405


async def test_batch_get_of_instance_history_is_its_history_bundle(client: httpx.AsyncClient) -> None:
    stored = parse(await post(client, "Patient", patient(unique())))
    [entry] = await _batch(client, {"request": {"method": "GET", "url": f"Patient/{stored['id']}/_history"}})
    assert entry["resource"]["type"] == "history"
    assert [e["resource"]["id"] for e in entry["resource"]["entry"]] == [stored["id"]]


async def test_batch_entry_runs_an_operation(client: httpx.AsyncClient) -> None:
    stored, other = [parse(await post(client, "Patient", patient(unique()))) for _ in range(2)]
    [entry] = await _batch(client, {"request": {"method": "GET", "url": f"Patient/{stored['id']}/$everything"}})
    assert _status(entry) == 200
    ids = [e["resource"]["id"] for e in entry["resource"]["entry"]]
    assert stored["id"] in ids and other["id"] not in ids  # the patient's compartment, not a search of Patients


async def test_transaction_entry_cannot_run_an_operation(client: httpx.AsyncClient) -> None:
    pseudonym = unique()
    r = await _bundle(client, "transaction", _entry(patient(pseudonym), "POST", "Patient"),
                      {"request": {"method": "GET", "url": "Patient/x/$everything"}})
    assert r.status_code == 400
    assert parse(r)["issue"][0]["expression"] == ["Bundle.entry[1]"]
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert found.get("entry", []) == []


async def test_a_bundle_entry_cannot_be_a_bundle(client: httpx.AsyncClient) -> None:
    [entry] = await _batch(client, _entry({"resourceType": "Bundle", "type": "batch"}, "POST", "/"))
    assert _status(entry) == 400


async def test_transaction_get_with_if_modified_since_not_before_its_update_is_304(client: httpx.AsyncClient) -> None:
    stored = parse(await post(client, "Patient", patient(unique())))
    url = f"Patient/{stored['id']}"
    r = await _bundle(client, "transaction",
                      {"request": {"method": "GET", "url": url, "ifModifiedSince": "2999-01-01T00:00:00Z"}},
                      {"request": {"method": "GET", "url": url, "ifModifiedSince": "2000-01-01T00:00:00Z"}})
    assert [e["response"]["status"] for e in parse(r)["entry"]] == ["304 Not Modified", "200 OK"]


# -- one point of authorization ----------------------------------------------------------------------------


class _Refused(FhirError):
    status = 403


@pytest.fixture
def refuse_observation_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Interaction, str | None]]]:
    """``authorize`` that records every request it sees and refuses writes of Observations."""
    seen: list[tuple[Interaction, str | None]] = []

    def authorize(ctx: RequestContext, request: FhirRequest) -> None:
        seen.append((request.interaction, request.resource_type))
        if request.is_write and request.resource_type == "Observation":
            raise _Refused("Observations are read-only here", code="forbidden")

    monkeypatch.setattr(authorization, "authorize", authorize)
    yield seen


def _observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": subject}}


async def test_authorize_sees_every_http_request(client: httpx.AsyncClient,
                                                 refuse_observation_writes: list[Any]) -> None:
    stored = parse(await post(client, "Patient", patient(unique())))
    r = await post(client, "Observation", _observation(f"Patient/{stored['id']}"))
    assert r.status_code == 403
    await client.get(f"/fhir/Patient/{stored['id']}")
    assert refuse_observation_writes == [(Interaction.CREATE, "Patient"), (Interaction.CREATE, "Observation"),
                                         (Interaction.READ, "Patient")]


async def test_authorize_sees_every_batch_entry_on_its_own(client: httpx.AsyncClient,
                                                           refuse_observation_writes: list[Any]) -> None:
    stored = parse(await post(client, "Patient", patient(unique())))
    entries = await _batch(client, _entry(_observation(f"Patient/{stored['id']}"), "POST", "Observation"),
                           {"request": {"method": "GET", "url": f"Patient/{stored['id']}"}})
    assert [_status(e) for e in entries] == [403, 200]
    assert (Interaction.BATCH, None) in refuse_observation_writes
    assert (Interaction.READ, "Patient") in refuse_observation_writes


async def test_a_refused_transaction_entry_fails_it_before_anything_is_written(
        client: httpx.AsyncClient, refuse_observation_writes: list[Any]) -> None:
    pseudonym = unique()
    r = await _bundle(client, "transaction",
                      _entry(patient(pseudonym), "POST", "Patient", "urn:uuid:33333333-3333-4333-8333-333333333333"),
                      _entry(_observation("urn:uuid:33333333-3333-4333-8333-333333333333"), "POST", "Observation"))
    assert r.status_code == 403
    assert parse(r)["issue"][0]["expression"] == ["Bundle.entry[1]"]
    found = parse(await client.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{pseudonym}"))
    assert found.get("entry", []) == []


# -- the write interactions check what they store ----------------------------------------------------------


async def test_create_checks_structure_itself(services: Services) -> None:
    ctx = RequestContext.system()
    with pytest.raises(InvalidRequest):
        await run_in_transaction(ctx, services, lambda uow: create(uow, "Patient", patient(unique(), active="yes")))


async def test_update_checks_structure_type_and_id_itself(services: Services) -> None:
    ctx = RequestContext.system()
    for resource_type, resource in (("Patient", patient(unique(), id="u1", active="yes")),
                                    ("Observation", patient(unique(), id="u1")),
                                    ("Patient", patient(unique(), id="u2"))):
        with pytest.raises(InvalidRequest):
            await run_in_transaction(ctx, services, lambda uow, t=resource_type, r=resource: update(uow, t, "u1", r))
    assert await services.store.current(ctx, "Patient", "u1") is None
