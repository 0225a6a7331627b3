"""The audit trail of a server that takes tokens (issue #11 items 4 and 8): a request without a valid token (401)
and a write refused by the caller's role (403) each leave one AuditEvent, naming the client when the token names
one; the refused write stores nothing. Every token request leaves one too, a "Login" (security.html: the
authentications are audited), issued or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fhir_server.interactions.audit_event import AUTHENTICATION_TYPE, CENTER_SYSTEM, CLIENT_SYSTEM, LOGIN, ROLE_SYSTEM
from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from tests.audit.conftest import decoded_query
from tests.conftest import client_as, parse, patient, post, unique
from tests.security.tokens import ClientsFile, assertion, bearer_client, form, request_token, token_for


async def _flushed_events(services: Services, query: str) -> list[dict[str, Any]]:
    assert services.audit_log is not None
    await services.audit_log.flush()
    async with client_as(services, Caller(id=unique("auditor-"), role=Role.ADMIN)) as admin:
        response = await admin.get(f"/fhir/AuditEvent?{query}&_count=1000")
    assert response.status_code == 200, response.text
    return [e["resource"] for e in parse(response).get("entry", [])]


async def test_a_request_without_a_token_is_audited_as_an_unauthenticated_client(
        smart_services: Services, anonymous: httpx.AsyncClient) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    marker = unique()
    assert (await anonymous.get(f"/fhir/Patient?identifier={marker}")).status_code == 401
    found = [e for e in await _flushed_events(smart_services, f"date=ge{since}&outcome=4")
             if marker in (decoded_query(e) or "")]
    assert len(found) == 1
    [event] = found
    assert event["agent"][0]["who"] == {"display": "unauthenticated client"}
    assert event["outcomeDesc"].startswith("401: ")


async def test_a_write_refused_by_the_role_is_audited_with_the_client(
        smart_services: Services, clients: ClientsFile, anonymous: httpx.AsyncClient) -> None:
    client = clients.register("researcher")
    marker = unique("P-")
    async with bearer_client(smart_services, await token_for(anonymous, client, "system/*.rs")) as researcher:
        assert (await post(researcher, "Patient", patient(marker))).status_code == 403
        searched = await researcher.get(f"/fhir/Patient?identifier=https://cml-registry.eu/fhir/sid/patient|{marker}")
        assert parse(searched)["total"] == 0
    found = await _flushed_events(smart_services, f"agent:identifier={CLIENT_SYSTEM}|{client.client_id}")
    assert sorted((e["subtype"][0]["code"], e["action"], e["outcome"]) for e in found) == [
        ("110122", "E", "0"), ("create", "C", "4"), ("search-type", "E", "0")]  # 110122: its token request
    refused = next(e for e in found if e["outcome"] == "4")
    assert refused["outcomeDesc"].startswith("403: ")
    assert refused["agent"][0]["role"] == [{"coding": [{"system": ROLE_SYSTEM, "code": "researcher"}]}]


async def test_a_token_request_is_audited_as_a_login_of_the_client_with_its_role_and_center(
        smart_services: Services, clients: ClientsFile, anonymous: httpx.AsyncClient) -> None:
    client = clients.register("ehr", "FR-POI")
    await token_for(anonymous, client, "system/*.rs")
    [event] = await _flushed_events(smart_services, f"agent:identifier={CLIENT_SYSTEM}|{client.client_id}")
    assert (event["type"], event["subtype"], event["action"], event["outcome"]) == (
        AUTHENTICATION_TYPE, [LOGIN], "E", "0")
    assert event["agent"][0]["role"] == [{"coding": [{"system": ROLE_SYSTEM, "code": "ehr"}]},
                                         {"coding": [{"system": CENTER_SYSTEM, "code": "FR-POI"}]}]


async def test_a_refused_token_request_is_audited_with_its_oauth_error(
        smart_services: Services, clients: ClientsFile, anonymous: httpx.AsyncClient) -> None:
    client = clients.register("admin")
    expired = assertion(client, exp=1, iat=0)
    assert (await request_token(anonymous, form(expired))).status_code == 400
    [event] = await _flushed_events(smart_services, f"agent:identifier={CLIENT_SYSTEM}|{client.client_id}")
    assert (event["type"], event["outcome"]) == (AUTHENTICATION_TYPE, "4")
    assert event["outcomeDesc"].startswith("invalid_client: ")


async def test_a_token_request_naming_no_client_is_audited_as_unauthenticated(
        smart_services: Services, anonymous: httpx.AsyncClient) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await request_token(anonymous, {"grant_type": "client_credentials"})).status_code == 400
    found = await _flushed_events(smart_services, f"date=ge{since}&type={AUTHENTICATION_TYPE['system']}|110114")
    assert any(e["agent"][0]["who"] == {"display": "unauthenticated client"} and e["outcome"] == "4"
               and e["outcomeDesc"].startswith("invalid_client: ") for e in found)
