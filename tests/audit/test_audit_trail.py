"""The audit trail (issue #11 item 8; README, "Audit trail"): every interaction leaves one BALP-shaped AuditEvent;
a write's is committed in the write's own transaction, a read's is queued and written in batches, a refusal or a
failure gets one too, and nothing queued is lost at a clean shutdown. Over HTTP, against the real mongod."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.api.authentication import FixedCaller
from fhir_server.context import RequestContext
from fhir_server.errors import Forbidden
from fhir_server.interactions import authorization
from fhir_server.interactions.audit_event import CENTER_SYSTEM, CLIENT_SYSTEM, ENTITY_TYPE, OBJECT_ROLE, ROLE_SYSTEM
from fhir_server.interactions.request import FhirRequest
from fhir_server.permissions import Role
from fhir_server.resources import check_structure
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.audit.conftest import NEVER, a_client, decoded_query, events, events_of, flush, references
from tests.bulk.conftest import finish, kickoff, local
from tests.conftest import FHIR_JSON, body, client_as, parse, patient, post, unique

PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"


def observation(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{patient_id}"}}


async def post_bundle(http: httpx.AsyncClient, bundle: dict[str, Any]) -> httpx.Response:
    return await http.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})


def subtypes(found: list[dict[str, Any]]) -> list[str]:
    return sorted(e["subtype"][0]["code"] if "subtype" in e else "-" for e in found)


async def test_a_create_leaves_exactly_one_event_committed_with_it(audit_services: Services,
                                                                    auditor: httpx.AsyncClient) -> None:
    caller = a_client()
    async with client_as(audit_services, caller) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
    found = await events_of(auditor, caller)  # no flush: the event was written in the create's transaction
    assert len(found) == 1
    event = found[0]
    assert event["type"] == {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                             "display": "RESTful Operation"}
    assert event["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "create"}]
    assert (event["action"], event["outcome"]) == ("C", "0")
    assert references(event, "4") == {f"Patient/{created['id']}/_history/1"}
    assert references(event, "1") == {f"Patient/{created['id']}"}
    client, server = event["agent"]
    assert client["who"]["identifier"]["value"] == caller.id and client["requestor"] is True
    assert client["network"] == {"address": "127.0.0.1", "type": "2"}  # httpx's ASGI transport's client
    assert client["role"] == [{"coding": [{"system": ROLE_SYSTEM, "code": "admin"}]}]
    assert server["requestor"] is False
    assert event["source"]["observer"]["display"] == audit_services.settings.audit_source
    check_structure(event)  # a valid R4 AuditEvent


async def test_a_failed_transaction_stores_nothing_and_one_failure_event_after_it(
        audit_services: Services, auditor: httpx.AsyncClient) -> None:
    caller, marker = a_client(), unique("P-")
    async with client_as(audit_services, caller) as http:
        existing = parse(await post(http, "Patient", patient(unique("Q-"))))
        response = await post_bundle(http, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{unique()}", "resource": patient(marker),
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {**existing, "gender": "male"},
             "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"7"'}},
        ]})
        assert response.status_code == 412
        assert parse(await http.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{marker}"))["total"] == 0
    assert subtypes(await events_of(auditor, caller)) == ["create"]  # the aborted transaction left no trace
    await flush(audit_services)
    found = await events_of(auditor, caller)
    assert subtypes(found) == ["create", "search-type", "transaction"]
    failed = next(e for e in found if e["subtype"][0]["code"] == "transaction")
    assert (failed["action"], failed["outcome"]) == ("E", "4")
    assert failed["outcomeDesc"].startswith("412: ")
    assert "entity" not in failed  # nothing was changed


async def test_a_transaction_leaves_one_event_naming_everything_it_wrote(audit_services: Services,
                                                                         auditor: httpx.AsyncClient) -> None:
    caller, marker, patient_url = a_client(), unique("P-"), f"urn:uuid:{unique()}"
    async with client_as(audit_services, caller) as http:
        response = await post_bundle(http, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": patient_url, "resource": patient(marker), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {**observation("x"), "subject": {"reference": patient_url}},
             "request": {"method": "POST", "url": "Observation"}},
        ]})
    assert response.status_code == 200
    written = {e["response"]["location"].split("/fhir/")[1] for e in parse(response)["entry"]}
    [event] = await events_of(auditor, caller)
    assert (event["subtype"][0]["code"], event["action"], event["outcome"]) == ("transaction", "E", "0")
    assert references(event, "4") == written
    assert references(event, "1") == {next(w.rsplit("/_history", 1)[0] for w in written if w.startswith("Patient"))}


async def test_reads_and_searches_are_queued_and_written_by_the_flush(audit_services: Services,
                                                                      auditor: httpx.AsyncClient) -> None:
    writer, reader = a_client(), a_client(Role.RESEARCHER)
    async with client_as(audit_services, writer) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
        await post(http, "Observation", observation(created["id"]))
    async with client_as(audit_services, reader) as http:
        assert (await http.get(f"/fhir/Patient/{created['id']}")).status_code == 200
        assert (await http.get(f"/fhir/Observation?subject=Patient/{created['id']}")).status_code == 200
    assert await events_of(auditor, reader) == []  # queued: a read does not wait for its audit write
    await flush(audit_services)
    found = {e["subtype"][0]["code"]: e for e in await events_of(auditor, reader)}
    assert sorted(found) == ["read", "search-type"]
    read, search = found["read"], found["search-type"]
    assert (read["action"], read["outcome"]) == ("R", "0")
    assert references(read, "4") == {f"Patient/{created['id']}/_history/1"}
    assert references(read, "1") == {f"Patient/{created['id']}"}
    assert (search["action"], search["outcome"]) == ("E", "0")
    assert decoded_query(search) == f"Observation?subject=Patient/{created['id']}"
    assert references(search, "1") == {f"Patient/{created['id']}"}  # whose data the search returned
    assert read["agent"][0]["role"] == [{"coding": [{"system": ROLE_SYSTEM, "code": "researcher"}]}]
    check_structure(search)


async def test_a_head_is_audited_as_the_read_it_is(audit_services: Services, auditor: httpx.AsyncClient) -> None:
    """A HEAD tells whether a resource exists and which version is current: audited like the GET it mirrors."""
    writer, reader = a_client(), a_client(Role.RESEARCHER)
    async with client_as(audit_services, writer) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
    async with client_as(audit_services, reader) as http:
        assert (await http.head(f"/fhir/Patient/{created['id']}")).status_code == 200
    await flush(audit_services)
    [read] = await events_of(auditor, reader)
    assert (read["subtype"][0]["code"], read["action"], read["outcome"]) == ("read", "R", "0")
    assert references(read, "1") == {f"Patient/{created['id']}"}


async def test_an_ehr_clients_events_carry_its_center(audit_services: Services, auditor: httpx.AsyncClient) -> None:
    caller = a_client(Role.EHR, center="FR-POI")
    async with client_as(audit_services, caller) as http:
        assert (await http.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{unique()}")).status_code == 200
    await flush(audit_services)
    [event] = await events_of(auditor, caller)
    assert event["agent"][0]["role"] == [{"coding": [{"system": ROLE_SYSTEM, "code": "ehr"}]},
                                         {"coding": [{"system": CENTER_SYSTEM, "code": "FR-POI"}]}]


async def test_refused_and_failed_requests_are_audited_with_their_outcome(audit_services: Services,
                                                                          auditor: httpx.AsyncClient) -> None:
    researcher, admin, missing = a_client(Role.RESEARCHER), a_client(), unique()
    async with client_as(audit_services, researcher) as http:
        assert (await http.get("/fhir/AuditEvent")).status_code == 403
        assert (await http.get(f"/fhir/Patient/{missing}")).status_code == 404
        assert (await http.get("/fhir/Nonsense/1")).status_code == 404  # refused while the URL is parsed
    async with client_as(audit_services, admin) as http:
        assert (await post(http, "Patient", {"resourceType": "Patient", "gender": 12})).status_code == 400
    await flush(audit_services)
    refused = {e["outcomeDesc"][:3]: e for e in await events_of(auditor, researcher)}
    assert sorted(refused) == ["403", "404"] and len(await events_of(auditor, researcher)) == 3
    assert (refused["403"]["subtype"][0]["code"], refused["403"]["outcome"]) == ("search-type", "4")
    not_found = [e for e in await events_of(auditor, researcher) if e["outcomeDesc"].startswith("404")]
    by_target = {frozenset(references(e, "4")): e for e in not_found}
    assert by_target[frozenset({f"Patient/{missing}"})]["subtype"][0]["code"] == "read"
    unparsed = by_target[frozenset()]
    assert "subtype" not in unparsed and unparsed["action"] == "R" and unparsed["outcome"] == "4"
    [invalid] = await events_of(auditor, admin)
    assert (invalid["subtype"][0]["code"], invalid["action"], invalid["outcome"]) == ("create", "C", "4")
    assert invalid["outcomeDesc"].startswith("400: ")
    check_structure(invalid)


async def test_a_batch_leaves_one_event_per_entry(audit_services: Services, auditor: httpx.AsyncClient) -> None:
    caller = a_client()
    async with client_as(audit_services, caller) as http:
        existing = parse(await post(http, "Patient", patient(unique("P-"))))
        response = await post_bundle(http, {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": patient(unique("P-")), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
            {"request": {"method": "GET", "url": f"Patient/{unique()}"}},
            {"request": {"method": "GET", "url": "Nonsense"}},
        ]})
    assert [e["response"]["status"][:3] for e in parse(response)["entry"]] == ["201", "200", "404", "404"]
    assert subtypes(await events_of(auditor, caller)) == ["create", "create"]  # the writes, committed with them
    await flush(audit_services)
    found = await events_of(auditor, caller)
    assert subtypes(found) == ["-", "create", "create", "read", "read"]
    assert sorted(e["outcome"] for e in found) == ["0", "0", "0", "4", "4"]


async def test_an_operation_is_audited_with_its_query_and_patient(audit_services: Services,
                                                                  auditor: httpx.AsyncClient) -> None:
    caller = a_client()
    async with client_as(audit_services, caller) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
        assert (await http.get(f"/fhir/Patient/{created['id']}/$everything")).status_code == 200
    await flush(audit_services)
    [operation] = [e for e in await events_of(auditor, caller) if e["subtype"][0]["code"] == "operation"]
    assert (operation["action"], operation["outcome"]) == ("E", "0")
    assert decoded_query(operation) == f"Patient/{created['id']}/$everything"
    assert references(operation, "1") == {f"Patient/{created['id']}"}


async def test_a_view_of_the_report_page_is_audited_with_its_query(audit_services: Services,
                                                                    auditor: httpx.AsyncClient) -> None:
    caller = a_client(Role.RESEARCHER)
    async with client_as(audit_services, caller) as http:
        assert (await http.get("/report", params={"country": "FR"})).status_code == 200
        assert (await http.get("/report", params={"period-end": "never"})).status_code == 400
    await flush(audit_services)
    found = sorted(((decoded_query(e), e["outcome"]) for e in await events_of(auditor, caller)), key=str)
    assert found == [("/report?country=FR", "0"), ("/report?period-end=never", "4")]


async def test_reading_the_audit_trail_adds_one_small_event_per_read(audit_services: Services,
                                                                    auditor: httpx.AsyncClient) -> None:
    admin = a_client()
    async with client_as(audit_services, admin) as http:
        created = parse(await post(http, "Patient", patient(unique("P-"))))
        for _ in range(3):
            response = await http.get(f"/fhir/AuditEvent?patient=Patient/{created['id']}")
            assert response.status_code == 200 and parse(response)["entry"]
    await flush(audit_services)
    reads = [e for e in await events_of(auditor, admin) if e["subtype"][0]["code"] == "search-type"]
    assert len(reads) == 3
    for event in reads:  # the query only: never the patients the events read mention
        assert [e["role"]["code"] for e in event["entity"]] == ["24"]
        assert decoded_query(event) == f"AuditEvent?patient=Patient/{created['id']}"


async def test_queued_events_are_written_at_a_clean_shutdown(settings: Settings, auditor: httpx.AsyncClient) -> None:
    caller = a_client(Role.RESEARCHER)
    app = create_app(settings.model_copy(update={"audit_flush_ms": NEVER, "audit_batch_size": 100_000}),
                     authenticator=FixedCaller(caller))
    async with app.router.lifespan_context(app):  # start-up and shutdown as uvicorn runs them
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for _ in range(3):
                assert (await http.get(f"/fhir/Patient?identifier={unique()}")).status_code == 200
        assert await events_of(auditor, caller) == []  # still queued in the stopping server
    assert subtypes(await events_of(auditor, caller)) == ["search-type"] * 3


async def test_an_export_files_download_is_audited(audit_services: Services, auditor: httpx.AsyncClient) -> None:
    caller, marker = a_client(Role.RESEARCHER), unique("P-")
    async with client_as(audit_services, a_client()) as http:
        await post(http, "Patient", patient(marker))
    async with client_as(audit_services, caller) as http:
        status = await kickoff(http, f"Patient/$export?_type=Patient&_typeFilter=Patient%3Fidentifier%3D{marker}")
        item = (await finish(http, status))["output"][0]
        assert (await http.get(local(item["url"]))).status_code == 200
        assert (await http.get(local(item["url"]) + "-nothing")).status_code == 404
    await flush(audit_services)
    downloads = [e for e in await events_of(auditor, caller) if e["action"] == "R"]
    file_path = local(item["url"]).removeprefix("/fhir/")
    assert sorted((decoded_query(e), e["outcome"]) for e in downloads) == [
        (file_path, "0"), (f"{file_path}-nothing", "4")]


async def test_a_write_refused_by_authorization_is_audited_outside_its_transaction(
        audit_services: Services, auditor: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever rule refuses (``authorization.authorize``, issue #11's scopes and roles), the refusal is recorded
    once, after it, for an HTTP write and for a transaction's entry alike, and nothing is stored."""
    researcher, marker = a_client(Role.RESEARCHER), unique("P-")

    def researchers_write_nothing(ctx: RequestContext, request: FhirRequest) -> None:
        if ctx.role is Role.RESEARCHER and request.is_write:
            raise Forbidden("A researcher writes nothing")

    monkeypatch.setattr(authorization, "authorize", researchers_write_nothing)
    async with client_as(audit_services, researcher) as http:
        assert (await post(http, "Patient", patient(marker))).status_code == 403
        response = await post_bundle(http, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": patient(marker), "request": {"method": "POST", "url": "Patient"}}]})
        assert response.status_code == 403
        assert parse(await http.get(f"/fhir/Patient?identifier={PATIENT_SYSTEM}|{marker}"))["total"] == 0
    assert await events_of(auditor, researcher) == []
    await flush(audit_services)
    found = await events_of(auditor, researcher)
    refused = sorted((e["subtype"][0]["code"], e["action"], e["outcome"]) for e in found if e["outcome"] != "0")
    assert refused == [("create", "C", "4"), ("transaction", "E", "4")]


async def test_behind_a_trusted_proxy_the_client_address_is_the_one_it_forwards(
        audit_services: Services, auditor: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's ASGI transport connects from 127.0.0.1: trusted as a proxy, the X-Forwarded-For it names counts;
    from an untrusted peer the header is ignored (anyone can send it)."""
    trusted, untrusted = a_client(), a_client()
    async with client_as(audit_services, untrusted) as http:
        await http.get(f"/fhir/Patient?identifier={unique()}", headers={"X-Forwarded-For": "203.0.113.9"})
    monkeypatch.setattr(audit_services.settings, "trusted_proxies", "127.0.0.1/32")
    async with client_as(audit_services, trusted) as http:
        await http.get(f"/fhir/Patient?identifier={unique()}", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"})
    await flush(audit_services)
    [seen_untrusted] = await events_of(auditor, untrusted)
    [seen_trusted] = await events_of(auditor, trusted)
    assert seen_untrusted["agent"][0]["network"]["address"] == "127.0.0.1"
    assert seen_trusted["agent"][0]["network"] == {"address": "203.0.113.9", "type": "2"}


async def test_a_search_names_each_patient_of_its_page_once_with_the_balp_codes(audit_services: Services,
                                                                                auditor: httpx.AsyncClient) -> None:
    writer, reader = a_client(), a_client(Role.RESEARCHER)
    async with client_as(audit_services, writer) as http:
        ids = [parse(await post(http, "Patient", patient(unique("P-"))))["id"] for _ in range(3)]
        for patient_id in ids:
            for _ in range(2):
                await post(http, "Observation", observation(patient_id))
    subjects = ",".join(f"Patient/{i}" for i in ids)
    async with client_as(audit_services, reader) as http:
        assert len(parse(await http.get(f"/fhir/Observation?subject={subjects}")).get("entry", [])) == 6
    await flush(audit_services)
    [search] = await events_of(auditor, reader)
    patients = [e for e in search["entity"] if e["role"]["code"] == "1"]
    assert sorted(e["what"]["reference"] for e in patients) == sorted(f"Patient/{i}" for i in ids)
    for entity in patients:  # Person / Patient, as codes (the display each would repeat is left out)
        assert entity["type"] == {"system": ENTITY_TYPE, "code": "1"}
        assert entity["role"] == {"system": OBJECT_ROLE, "code": "1"}
    [query] = [e for e in search["entity"] if e["role"]["code"] == "24"]
    assert query["type"] == {"system": ENTITY_TYPE, "code": "2"} and "what" not in query
    for found_by in (f"patient=Patient/{ids[1]}", f"entity=Patient/{ids[2]}", f"entity={ids[0]}",
                     f"entity-role={OBJECT_ROLE}|1&patient=Patient/{ids[0]}",
                     f"entity-type={ENTITY_TYPE}|1&patient={ids[0]}"):
        assert [e["id"] for e in await events(auditor, f"{found_by}&agent:identifier={CLIENT_SYSTEM}|{reader.id}")] \
            == [search["id"]], found_by
    check_structure(search)


async def test_a_reads_event_is_queued_once_its_response_is_sent(audit_services: Services) -> None:
    """A read's event is built after the response's body has gone to the client (the client does not wait for it),
    and before the request ends (a clean shutdown, which waits for requests, still writes it)."""
    reader = a_client(Role.RESEARCHER)
    assert audit_services.audit_log is not None
    log = audit_services.audit_log
    app = create_app(audit_services.settings, audit_services, authenticator=FixedCaller(reader))
    pending_at_body: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            pending_at_body.append(log.pending)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/fhir/Patient", "raw_path": b"/fhir/Patient", "query_string": b"_count=1", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"accept", FHIR_JSON.encode())], "client": ("127.0.0.1", 5),
             "server": ("testserver", 80)}
    before = log.pending
    await app(scope, receive, send)
    assert pending_at_body == [before]  # not yet queued while the body went out
    assert log.pending == before + 1  # queued before the request ended
