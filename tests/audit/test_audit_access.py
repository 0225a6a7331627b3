"""Who reads the audit trail and how (issue #11 item 8): ``GET /fhir/AuditEvent`` searched by ``date``, ``agent``,
``entity``, ``patient``, ``action``, ``outcome`` (and ``type``, ``subtype``, ``source``, ``agent-role``) by an admin
only; any other caller gets 403, and finds no AuditEvent through any other read path either; nobody creates,
updates, patches or deletes one over the API (405, in Bundles too)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.interactions.audit_event import CENTER_SYSTEM, CLIENT_SYSTEM, ROLE_SYSTEM, SOURCE_SYSTEM
from fhir_server.permissions import Role
from fhir_server.services import Services
from tests.audit.conftest import a_client, events, flush
from tests.conftest import FHIR_JSON, body, client_as, parse, patient, post, put, unique


@pytest.fixture(scope="module")
async def history(audit_services: Services) -> dict[str, Any]:
    """One client's recorded story: it creates a patient and an observation, updates the patient, reads it, and
    asks for a patient that does not exist."""
    caller = a_client()
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with client_as(audit_services, caller) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
        observation = parse(await post(http, "Observation", {
            "resourceType": "Observation", "status": "final", "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{created['id']}"}}))
        assert (await put(http, f"Patient/{created['id']}", {**created, "gender": "male"})).status_code == 200
        assert (await http.get(f"/fhir/Patient/{created['id']}")).status_code == 200
        assert (await http.get(f"/fhir/Patient/{unique()}")).status_code == 404
    await flush(audit_services)
    return {"agent": f"agent:identifier={CLIENT_SYSTEM}|{caller.id}", "patient": created["id"],
            "observation": observation["id"], "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}


async def found(auditor: httpx.AsyncClient, story: dict[str, Any], query: str) -> list[str]:
    """The subtypes of the story's events matching ``query`` (narrowed to the story's client)."""
    return sorted(e["subtype"][0]["code"] for e in await events(auditor, f"{story['agent']}&{query}"))


async def test_the_agent_parameter_finds_a_clients_events(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    assert await found(auditor, history, "_count=1000") == ["create", "create", "read", "read", "update"]
    assert await events(auditor, f"agent:identifier={CLIENT_SYSTEM}|{unique()}") == []
    client_id = history["agent"].rsplit("|", 1)[1]
    assert len(await events(auditor, f"agent:identifier={client_id}")) == 5  # the client id alone


async def test_the_date_parameter(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    assert len(await found(auditor, history, f"date=ge{history['start']}")) == 5
    assert await found(auditor, history, f"date=lt{history['start']}") == []


async def test_events_sort_by_date(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    newest_first = await events(auditor, f"{history['agent']}&_sort=-date")
    assert [e["recorded"] for e in newest_first] == sorted((e["recorded"] for e in newest_first), reverse=True)
    assert len(newest_first) == 5


async def test_the_entity_and_patient_parameters(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    patient_id = history["patient"]
    # entity is every entity's ``what``: the patient is an entity of the observation's creation too
    assert await found(auditor, history, f"entity=Patient/{patient_id}") == ["create", "create", "read", "update"]
    assert await found(auditor, history, f"entity=Observation/{history['observation']}") == ["create"]
    assert await found(auditor, history, f"patient=Patient/{patient_id}") == ["create", "create", "read", "update"]
    assert await found(auditor, history, f"patient={patient_id}") == ["create", "create", "read", "update"]
    assert await found(auditor, history, f"patient:missing=true&entity=Patient/{patient_id}") == []


async def test_a_patients_revinclude_finds_its_events(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    """The same events as ``patient=`` (the trail's ``patient`` is served by the ``entity`` index)."""
    patient_id = history["patient"]
    revinclude = parse(await auditor.get(f"/fhir/Patient?_id={patient_id}&_revinclude=AuditEvent:patient"
                                         "&_count=1000"))
    client_id = history["agent"].rsplit("|", 1)[1]
    included = [e["resource"] for e in revinclude["entry"] if e["search"]["mode"] == "include"]
    assert sorted(e["subtype"][0]["code"] for e in included
                  if any(a.get("who", {}).get("identifier", {}).get("value") == client_id for a in e["agent"])) == [
        "create", "create", "read", "update"]


async def test_the_action_outcome_type_and_subtype_parameters(auditor: httpx.AsyncClient,
                                                              history: dict[str, Any]) -> None:
    assert await found(auditor, history, "action=C") == ["create", "create"]
    assert await found(auditor, history, "action=U") == ["update"]
    assert await found(auditor, history, "outcome=4") == ["read"]
    assert await found(auditor, history, "outcome=0") == ["create", "create", "read", "update"]
    assert await found(auditor, history, "subtype=http://hl7.org/fhir/restful-interaction|update") == ["update"]
    assert len(await found(auditor, history, "type=rest")) == 5


async def test_the_source_and_agent_role_parameters(audit_services: Services, auditor: httpx.AsyncClient,
                                                    history: dict[str, Any]) -> None:
    source = audit_services.settings.audit_source
    assert len(await found(auditor, history, f"source:identifier={SOURCE_SYSTEM}|{source}")) == 5
    assert len(await found(auditor, history, f"agent-role={ROLE_SYSTEM}|admin")) == 5
    assert await found(auditor, history, f"agent-role={CENTER_SYSTEM}|FR-POI") == []


async def test_an_admin_reads_one_event(auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    [event] = await events(auditor, f"{history['agent']}&action=U")
    response = await auditor.get(f"/fhir/AuditEvent/{event['id']}")
    assert response.status_code == 200 and parse(response) == event


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.EHR, Role.MAINTAINER])
@pytest.mark.parametrize("url", ["AuditEvent", "AuditEvent?outcome=4", "AuditEvent/{event}", "?_type=AuditEvent"])
async def test_anyone_but_an_admin_is_refused_the_audit_trail(audit_services: Services, auditor: httpx.AsyncClient,
                                                              history: dict[str, Any], role: Role, url: str) -> None:
    [event] = await events(auditor, f"{history['agent']}&action=U")
    caller = a_client(role, center="FR-POI" if role is Role.EHR else None)
    async with client_as(audit_services, caller) as http:
        response = await http.get("/fhir/" + url.format(event=event["id"]))
    assert response.status_code == 403
    assert parse(response)["issue"][0]["code"] == "forbidden"


async def test_no_other_read_path_shows_an_audit_event_to_anyone_but_an_admin(
        audit_services: Services, auditor: httpx.AsyncClient, history: dict[str, Any]) -> None:
    """The store's access filter hides AuditEvents from ``_revinclude`` and ``_has`` too."""
    patient_id = history["patient"]
    revinclude = f"/fhir/Patient?_id={patient_id}&_revinclude=AuditEvent:patient"
    has = f"/fhir/Patient?_id={patient_id}&_has:AuditEvent:patient:action=U"
    admin = parse(await auditor.get(revinclude))
    assert {e["resource"]["resourceType"] for e in admin["entry"]} == {"Patient", "AuditEvent"}
    assert len(parse(await auditor.get(has))["entry"]) == 1
    async with client_as(audit_services, a_client(Role.RESEARCHER)) as http:
        seen = parse(await http.get(revinclude))
        assert {e["resource"]["resourceType"] for e in seen["entry"]} == {"Patient"}
        assert parse(await http.get(has)).get("entry", []) == []


@pytest.mark.parametrize(("method", "url"), [
    ("POST", "AuditEvent"), ("PUT", "AuditEvent/{event}"), ("PATCH", "AuditEvent/{event}"),
    ("DELETE", "AuditEvent/{event}"), ("DELETE", "AuditEvent?outcome=4"), ("PUT", "AuditEvent?outcome=4"),
    ("GET", "AuditEvent/{event}/_history"), ("GET", "AuditEvent/_history"),
])
async def test_nobody_changes_an_audit_event_over_the_api(auditor: httpx.AsyncClient, history: dict[str, Any],
                                                          method: str, url: str) -> None:
    [event] = await events(auditor, f"{history['agent']}&action=U")
    changed = {**event, "outcome": "0"}
    content_type = "application/json-patch+json" if method == "PATCH" else FHIR_JSON
    patch = [{"op": "replace", "path": "/outcome", "value": "0"}]
    response = await auditor.request(method, "/fhir/" + url.format(event=event["id"]),
                                     content=body(patch if method == "PATCH" else changed) if method != "GET" else None,
                                     headers={"Content-Type": content_type})
    assert response.status_code == 405
    assert parse(response)["resourceType"] == "OperationOutcome"
    assert parse(await auditor.get(f"/fhir/AuditEvent/{event['id']}")) == event


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_nobody_changes_an_audit_event_in_a_bundle(auditor: httpx.AsyncClient, history: dict[str, Any],
                                                         kind: str) -> None:
    [event] = await events(auditor, f"{history['agent']}&action=U")
    url = f"AuditEvent/{event['id']}"
    entries = [{"resource": {**event, "outcome": "0"}, "request": {"method": "PUT", "url": url}},
               {"request": {"method": "DELETE", "url": url}},
               {"resource": {**event, "id": None}, "request": {"method": "POST", "url": "AuditEvent"}}]
    response = await auditor.post("/fhir", content=body({"resourceType": "Bundle", "type": kind, "entry": entries}),
                                  headers={"Content-Type": FHIR_JSON})
    if kind == "batch":
        assert [e["response"]["status"][:3] for e in parse(response)["entry"]] == ["405"] * 3
        assert parse(response)["entry"][0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    else:
        assert response.status_code == 405
        assert parse(response)["resourceType"] == "OperationOutcome"
    assert parse(await auditor.get(f"/fhir/AuditEvent/{event['id']}")) == event
