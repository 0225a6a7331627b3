"""Roles and scopes on every interaction (issue #11 items 4 and 5), over HTTP with real tokens: a valid token
whose scopes or role do not allow the interaction is 403; batch and transaction entries are each checked as if
sent alone, and a transaction with one forbidden entry stores nothing."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.context import RequestContext
from fhir_server.interactions import authorization
from fhir_server.permissions import Role
from tests.conftest import FHIR_JSON, body, patient, unique
from tests.security.conftest import AsRole

VALUE_SET = {"resourceType": "ValueSet", "status": "draft", "url": "https://example.org/vs/roles-test"}


async def _post(http: httpx.AsyncClient, path: str, resource: dict) -> httpx.Response:  # type: ignore[type-arg]
    return await http.post(f"/fhir/{path}", content=body(resource), headers={"Content-Type": FHIR_JSON})


def _forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["issue"][0]["code"] == "forbidden"


async def test_an_ehr_client_writes_clinical_data_and_only_reads_conformance_resources(as_role: AsRole) -> None:
    ehr = await as_role("ehr", center="FR-POI")
    created = await _post(ehr, "Patient", patient(unique("ehr-")))
    assert created.status_code == 201, created.text
    assert (await ehr.get(f"/fhir/{created.headers['location'].split('/fhir/')[1]}")).status_code == 200
    assert (await ehr.get("/fhir/ValueSet", params={"_count": "1"})).status_code == 200
    _forbidden(await _post(ehr, "ValueSet", VALUE_SET))
    _forbidden(await ehr.post("/fhir/$reindex"))


async def test_a_researcher_reads_searches_and_reports_but_writes_nothing(as_role: AsRole) -> None:
    researcher = await as_role("researcher")
    assert (await researcher.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
    assert (await researcher.get("/fhir/_history", params={"_count": "1"})).status_code == 200
    assert (await researcher.get("/fhir/$registry-report")).status_code == 200
    _forbidden(await _post(researcher, "Patient", patient(unique("res-"))))
    _forbidden(await researcher.delete("/fhir/Patient/whatever"))
    _forbidden(await researcher.patch("/fhir/Patient/whatever", content=b"[]",
                                      headers={"Content-Type": "application/json-patch+json"}))
    _forbidden(await _post(researcher, "Group/$cohort", {"resourceType": "Parameters"}))


async def test_a_maintainer_writes_conformance_resources_and_reindexes_but_sees_no_clinical_data(
        as_role: AsRole) -> None:
    maintainer = await as_role("maintainer")
    created = await _post(maintainer, "ValueSet", VALUE_SET)
    assert created.status_code == 201, created.text
    reindex = await maintainer.post("/fhir/ValueSet/$reindex")
    assert reindex.status_code == 202, reindex.text
    _forbidden(await maintainer.get("/fhir/Patient"))
    _forbidden(await maintainer.get("/fhir/Observation/some-id"))
    _forbidden(await maintainer.get("/fhir/$registry-report"))
    _forbidden(await maintainer.get("/fhir"))  # a system search reads every type
    assert (await maintainer.get("/fhir", params={"_type": "ValueSet", "_count": "1"})).status_code == 200
    _forbidden(await _post(maintainer, "Patient", patient(unique("mnt-"))))


async def test_an_admin_does_everything(as_role: AsRole) -> None:
    admin = await as_role("admin")
    assert (await _post(admin, "Patient", patient(unique("adm-")))).status_code == 201
    assert (await _post(admin, "ValueSet", VALUE_SET)).status_code == 201
    assert (await admin.get("/fhir/$registry-report")).status_code == 200


async def test_the_tokens_scopes_narrow_what_the_role_allows(as_role: AsRole) -> None:
    ehr = await as_role("ehr", center="FR-POI", scope="system/Observation.rs")
    assert (await ehr.get("/fhir/Observation", params={"_count": "1"})).status_code == 200
    _forbidden(await ehr.get("/fhir/Patient"))
    _forbidden(await _post(ehr, "Observation", {"resourceType": "Observation", "status": "final",
                                                "code": {"text": "x"}}))
    v1 = await as_role("admin", scope="system/*.read")
    assert (await v1.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
    _forbidden(await _post(v1, "Patient", patient(unique("v1-"))))


async def test_a_transaction_with_one_forbidden_entry_stores_nothing(as_role: AsRole) -> None:
    ehr = await as_role("ehr", center="FR-POI")
    pseudonym = unique("txn-")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(pseudonym), "request": {"method": "POST", "url": "Patient"}},
        {"resource": VALUE_SET, "request": {"method": "POST", "url": "ValueSet"}},
    ]}
    _forbidden(await _post(ehr, "", bundle))
    found = await ehr.get("/fhir/Patient", params={"identifier": f"https://cml-registry.eu/fhir/sid/patient|{pseudonym}"})
    assert found.json().get("total", len(found.json().get("entry", []))) == 0


async def test_batch_entries_are_each_checked_as_if_sent_alone(as_role: AsRole) -> None:
    researcher = await as_role("researcher")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?_count=1"}},
        {"resource": patient(unique("batch-")), "request": {"method": "POST", "url": "Patient"}},
    ]}
    response = await _post(researcher, "", bundle)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("200") and statuses[1].startswith("403")


async def test_an_operation_without_a_rule_is_for_admins_only(as_role: AsRole) -> None:
    """A new operation is closed until its rule is written (``authorization._operation_needs``)."""
    _forbidden(await (await as_role("researcher")).get("/fhir/$no-such-operation"))
    assert (await (await as_role("admin")).get("/fhir/$no-such-operation")).status_code == 404


async def test_the_request_context_carries_the_tokens_client_role_center_and_scopes(
        as_role: AsRole, monkeypatch: pytest.MonkeyPatch) -> None:
    """What storage's access policy filters by (center isolation) comes from the token."""
    seen: list[RequestContext] = []
    monkeypatch.setattr(authorization, "authorize", lambda ctx, request: seen.append(ctx))
    ehr = await as_role("ehr", center="FR-POI", scope="system/Patient.rs")
    assert (await ehr.get("/fhir/Patient", params={"_count": "1"})).status_code == 200
    [ctx] = seen
    assert (ctx.role, ctx.center, ctx.scopes) == (Role.EHR, "FR-POI", frozenset({"system/Patient.rs"}))
    assert ctx.caller.startswith("ehr-")
