"""``X-Provenance`` (https://hl7.org/fhir/R4/http.html#custom): a Provenance sent with a write is stored in the same
transaction, targeting the version written; a bad one fails the write, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest

from fhir_server.context import Caller
from fhir_server.interactions.authorization import needs
from fhir_server.interactions.request import FhirRequest, Interaction
from fhir_server.permissions import Role
from fhir_server.services import Services
from tests.conftest import client_as, parse, patient, post, put, unique

PROVENANCE = {"resourceType": "Provenance", "agent": [{"who": {"display": "CHU de Poitiers EHR"}}],
              "activity": {"text": "registry submission"}}


def header(provenance: dict) -> str:
    return json.dumps(provenance)


async def _provenances_of(client: httpx.AsyncClient, reference: str) -> list[dict]:
    bundle = parse(await client.get("/fhir/Provenance", params={"target": reference}))
    return [e["resource"] for e in bundle.get("entry", [])]


async def test_a_create_with_x_provenance_stores_it_targeting_the_version(client: httpx.AsyncClient) -> None:
    created = await post(client, "Patient", patient(unique("prov-")), **{"X-Provenance": header(PROVENANCE)})
    assert created.status_code == 201, created.text
    pid = parse(created)["id"]
    [provenance] = await _provenances_of(client, f"Patient/{pid}")
    assert provenance["target"] == [{"reference": f"Patient/{pid}/_history/1"}]
    assert provenance["agent"] == PROVENANCE["agent"]
    assert provenance["recorded"] == parse(created)["meta"]["lastUpdated"]  # none sent: the time of the write


async def test_an_update_with_x_provenance_targets_the_new_version(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique("prov-"))))
    sent = {**PROVENANCE, "recorded": "2026-01-02T03:04:05Z", "target": [{"reference": "Organization/o1"}]}
    updated = await put(client, f"Patient/{created['id']}", {**created, "gender": "male"},
                        **{"X-Provenance": header(sent)})
    assert updated.status_code == 200, updated.text
    [provenance] = await _provenances_of(client, f"Patient/{created['id']}")
    assert provenance["target"] == [{"reference": "Organization/o1"},
                                    {"reference": f"Patient/{created['id']}/_history/2"}]
    assert provenance["recorded"] == "2026-01-02T03:04:05Z"


async def test_a_write_that_stores_nothing_new_stores_no_provenance(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique("prov-"))))
    again = await put(client, f"Patient/{created['id']}", created, **{"X-Provenance": header(PROVENANCE)})
    assert again.status_code == 200
    assert await _provenances_of(client, f"Patient/{created['id']}") == []


@pytest.mark.parametrize(("sent", "status"), [
    ("not json", 400),
    (header({"resourceType": "Patient"}), 400),
    (header({"resourceType": "Provenance"}), 400),  # agent is 1..*: the Provenance is refused, so is the write
])
async def test_a_bad_x_provenance_fails_the_write_and_stores_nothing(client: httpx.AsyncClient, sent: str,
                                                                     status: int) -> None:
    identifier = unique("prov-bad-")
    response = await post(client, "Patient", patient(identifier), **{"X-Provenance": sent})
    assert response.status_code == status, response.text
    found = parse(await client.get("/fhir/Patient", params={"identifier": identifier}))
    assert found.get("entry", []) == []


async def test_x_provenance_on_a_delete_is_400(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", patient(unique("prov-"))))
    response = await client.delete(f"/fhir/Patient/{created['id']}", headers={"X-Provenance": header(PROVENANCE)})
    assert response.status_code == 400
    assert (await client.get(f"/fhir/Patient/{created['id']}")).status_code == 200


def test_a_write_with_x_provenance_needs_the_right_to_create_a_provenance() -> None:
    """A token of ``system/Patient.cu`` alone cannot store a Provenance through the header (403 for the write)."""
    plain = FhirRequest("POST", Interaction.CREATE, "Patient")
    traced = FhirRequest("POST", Interaction.CREATE, "Patient", headers={"x-provenance": header(PROVENANCE)})
    assert needs(plain) == [("Patient", "c")]
    assert needs(traced) == [("Patient", "c"), ("Provenance", "c")]


async def test_a_caller_who_may_not_create_provenance_cannot_send_one(services: Services) -> None:
    caller = Caller("ehr-prov", Role.EHR, frozenset({"system/Patient.cu"}), center="PROV-A")
    async with client_as(services, caller) as http:
        identifier = unique("prov-scope-")
        refused = await post(http, "Patient", patient(identifier), **{"X-Provenance": header(PROVENANCE)})
        assert refused.status_code == 403, refused.text
        assert "Provenance" in parse(refused)["issue"][0]["diagnostics"]
        assert (await post(http, "Patient", patient(identifier))).status_code == 201  # without it: allowed
