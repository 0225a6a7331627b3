"""Every read path goes through the one access checkpoint (``AccessPolicy.read_filter``): a policy that hides
resources labelled restricted hides them from read, vread, history, search, ``_total``, ``_include``,
``_revinclude``, chaining, ``_has`` and conditional matches alike — the paths through which other servers
leaked tenants' data (HAPI #6065, #2012, #3394, #5275)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.bootstrap import start_services
from fhir_server.context import RequestContext
from fhir_server.reports.terminology import REASON_SYSTEM
from fhir_server.services import Services
from fhir_server.settings import Settings
from fhir_server.storage.access import AccessPolicy
from tests.conftest import FHIR_JSON, body, parse, patient, post, unique
from tests.reports.helpers import CONCEPTS, flatten

RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


class HideRestricted(AccessPolicy):
    def read_filter(self, ctx: RequestContext, resource_type: str | None) -> dict[str, Any]:
        return {"resource.meta.security.code": {"$ne": "R"}}


@pytest.fixture(scope="module")
async def restricted_client(settings: Settings, mongo_uri: str, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    from fhir_server.api.app import create_app

    svc = await start_services(settings, mongo_uri)
    svc.store.access = HideRestricted()
    transport = httpx.ASGITransport(app=create_app(svc.settings, svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    await svc.close()


async def _seed(client: httpx.AsyncClient) -> dict[str, str]:
    marker = unique()
    hidden = parse(await post(client, "Patient", patient(marker, meta={"security": [RESTRICTED]})))
    visible = parse(await post(client, "Patient", patient(marker)))
    ids = {"marker": marker, "hidden": hidden["id"], "visible": visible["id"]}
    for who in ("hidden", "visible"):
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": marker},
               "identifier": [{"system": "urn:test", "value": f"{marker}-{who}"}],
               "subject": {"reference": f"Patient/{ids[who]}"}}
        ids[f"obs-{who}"] = parse(await post(client, "Observation", obs))["id"]
    return ids


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "outcome"}


async def test_read_vread_and_history_hide_restricted(client: httpx.AsyncClient,
                                                      restricted_client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    assert (await restricted_client.get(f"/fhir/Patient/{ids['hidden']}")).status_code == 404
    assert (await restricted_client.get(f"/fhir/Patient/{ids['hidden']}/_history/1")).status_code == 404
    history = parse(await restricted_client.get("/fhir/Patient/_history?_count=1000"))
    assert ids["hidden"] not in {e["fullUrl"].rsplit("/", 1)[-1] for e in history["entry"]}
    assert (await restricted_client.get(f"/fhir/Patient/{ids['visible']}")).status_code == 200


async def test_search_and_total_hide_restricted(client: httpx.AsyncClient,
                                                restricted_client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    query = f"/fhir/Patient?identifier=https://cml-registry.eu/fhir/sid/patient|{ids['marker']}&_total=accurate"
    assert parse(await client.get(query))["total"] == 2
    restricted = parse(await restricted_client.get(query))
    assert restricted["total"] == 1 and _ids(restricted) == {ids["visible"]}


async def test_include_and_revinclude_hide_restricted(client: httpx.AsyncClient,
                                                      restricted_client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    included = parse(await restricted_client.get(
        f"/fhir/Observation?code:text={ids['marker']}&_include=Observation:subject"))
    assert ids["hidden"] not in _ids(included) and ids["visible"] in _ids(included)
    revincluded = parse(await restricted_client.get(
        f"/fhir/Observation?code:text={ids['marker']}&_revinclude=Observation:subject"))
    assert ids["hidden"] not in _ids(revincluded)


async def test_chain_and_has_do_not_see_restricted(client: httpx.AsyncClient,
                                                   restricted_client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    chained = parse(await restricted_client.get(
        f"/fhir/Observation?subject:Patient._id={ids['hidden']}"))
    assert _ids(chained) == set()
    assert _ids(parse(await client.get(f"/fhir/Observation?subject:Patient._id={ids['hidden']}"))) == {
        ids["obs-hidden"]}
    has = parse(await restricted_client.get(f"/fhir/Patient?_has:Observation:subject:code:text={ids['marker']}"))
    assert ids["hidden"] not in _ids(has) and ids["visible"] in _ids(has)


async def test_conditional_match_does_not_see_restricted(client: httpx.AsyncClient,
                                                         restricted_client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    criteria = f"identifier=https://cml-registry.eu/fhir/sid/patient|{ids['marker']}"
    payload = body(patient(ids["marker"], gender="male"))
    assert (await client.put(f"/fhir/Patient?{criteria}", content=payload,
                             headers={"Content-Type": FHIR_JSON})).status_code == 412  # two match
    r = await restricted_client.put(f"/fhir/Patient?{criteria}", content=payload,
                                    headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200 and parse(r)["id"] == ids["visible"]  # only the visible one matches


@pytest.mark.usefixtures("empty_db")
async def test_the_registry_report_counts_only_what_the_caller_may_read(
        client: httpx.AsyncClient, restricted_client: httpx.AsyncClient) -> None:
    """The report is one aggregation reading Patient, Observation (``$unionWith``), Organization (``$lookup``) and
    history: a restricted Patient is not counted, a restricted Organization gives no country, a restricted
    registration Observation gives no reason."""
    shown = parse(await post(client, "Organization", {"resourceType": "Organization", "name": "FR center",
                                                      "address": [{"country": "FR"}]}))
    hidden_org = parse(await post(client, "Organization", {
        "resourceType": "Organization", "name": "DE center", "address": [{"country": "DE"}],
        "meta": {"security": [RESTRICTED]}}))
    ids = {}
    for name, org, meta in (("hidden", shown, {"security": [RESTRICTED]}), ("in-fr", shown, None),
                            ("in-hidden-org", hidden_org, None)):
        extra = {"managingOrganization": {"reference": f"Organization/{org['id']}"}, **({"meta": meta} if meta else {})}
        ids[name] = parse(await post(client, "Patient", patient(unique(), **extra)))["id"]
    registration = {"resourceType": "Observation", "status": "final", "meta": {"security": [RESTRICTED]},
                    "code": {"coding": [{"system": CONCEPTS, "code": "registration-reason"}]},
                    "subject": {"reference": f"Patient/{ids['in-fr']}"}, "effectiveDateTime": "2007-03-01",
                    "valueCodeableConcept": {"coding": [{"system": REASON_SYSTEM, "code": "toxicity"}]}}
    assert (await post(client, "Observation", registration)).status_code == 201

    everything = await _report(client)
    assert everything[("patients", "", "")][0] == 3
    assert everything[("patients", "country", "FR")][0] == 2 and everything[("patients", "country", "DE")][0] == 1
    assert everything[("registration-reason", "registration-reason", "toxicity")][0] == 1
    visible = await _report(restricted_client)
    assert visible[("patients", "", "")][0] == 2
    assert visible[("patients", "country", "FR")][0] == 1 and visible[("patients", "country", "unknown")][0] == 1
    assert ("patients", "country", "DE") not in visible
    assert visible[("registration-reason", "registration-reason", "toxicity")][0] == 0


async def _report(client: httpx.AsyncClient) -> dict[tuple[str, str, str], Any]:
    response = await client.get("/fhir/$registry-report")
    assert response.status_code == 200, response.text
    return flatten(parse(response))
