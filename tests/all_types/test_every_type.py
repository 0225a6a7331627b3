"""Every R4 resource type (https://hl7.org/fhir/R4/resourcelist.html) answers to every interaction the server
has (http.html): create, read, vread, update, history, JSON Patch, conditional create, update and delete,
search, $validate and a transaction Bundle; and the CapabilityStatement lists each type with the search
parameters it really evaluates."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.resources import CONFORMANCE_TYPES, SERVED_TYPES, SUPPORTED_TYPES
from tests.all_types.examples import example_files, load
from tests.conftest import FHIR_JSON, body, parse, post, put

R4_TYPE_COUNT = 146  # resource-types minus the abstract Resource and DomainResource


def _first_examples() -> dict[str, str]:
    """type -> the first official example of that type (135 types have one)."""
    found: dict[str, str] = {}
    for name in example_files():
        kind = name.split("-", 1)[0]
        if kind in SUPPORTED_TYPES and kind not in found:
            found[kind] = name
    return found


FIRST = _first_examples()
# The conformance types have their own tests (tests/api, tests/ig_http); the data types without an example
# have no required element: an empty resource is valid.
TYPES = [t for t in SUPPORTED_TYPES if t not in CONFORMANCE_TYPES]


def _sample(kind: str) -> dict:
    if kind not in FIRST:
        return {"resourceType": kind}
    resource = load(FIRST[kind])
    resource.pop("id", None)
    resource.pop("meta", None)
    return resource


def test_every_r4_resource_type_is_served() -> None:
    assert len(SERVED_TYPES) == R4_TYPE_COUNT
    assert {"Encounter", "Practitioner", "MedicationRequest", "Provenance", "AuditEvent", "Bundle",
            "MedicinalProduct", "SubstanceSpecification"} <= set(SERVED_TYPES)
    assert "SubscriptionStatus" not in SERVED_TYPES  # R4B's, not R4's
    # the audit trail is served read-only (issue #11: recorded by the server, never written by a client)
    assert set(SERVED_TYPES) - set(SUPPORTED_TYPES) == {"AuditEvent"}


@pytest.mark.parametrize("kind", TYPES)
async def test_every_interaction_works_for_the_type(big_client: httpx.AsyncClient, kind: str) -> None:
    created = await post(big_client, kind, _sample(kind))
    assert created.status_code == 201, created.text
    ident = parse(created)["id"]
    url = f"/fhir/{kind}/{ident}"
    assert created.headers["location"].split("/_history")[0].endswith(f"{kind}/{ident}")

    current = parse(await big_client.get(url))
    current["implicitRules"] = "http://example.org/rules"
    updated = await put(big_client, f"{kind}/{ident}", current)
    assert updated.status_code == 200 and parse(updated)["meta"]["versionId"] == "2", updated.text
    assert (await big_client.get(f"{url}/_history/1")).status_code == 200
    history = parse(await big_client.get(f"{url}/_history"))
    assert history["total"] == 2

    patch = [{"op": "replace", "path": "/implicitRules", "value": "http://example.org/other-rules"}]
    patched = await big_client.patch(url, content=body(patch),
                                     headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200 and parse(patched)["implicitRules"] == "http://example.org/other-rules"

    again = await post(big_client, kind, _sample(kind), **{"If-None-Exist": f"_id={ident}"})
    assert again.status_code == 200 and parse(again)["id"] == ident

    found = parse(await big_client.get(f"/fhir/{kind}", params={"_id": ident}))
    assert [e["resource"]["id"] for e in found["entry"]] == [ident]

    # The operation's Parameters form (operation-resource-validate.html), the one a Parameters resource needs.
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": _sample(kind)}]}
    validated = await big_client.post(f"/fhir/{kind}/$validate", content=body(wrapped),
                                      headers={"Content-Type": FHIR_JSON})
    assert validated.status_code == 200, validated.text

    current = parse(await big_client.get(url))
    current["implicitRules"] = "http://example.org/conditional-rules"
    conditional = await big_client.put(f"/fhir/{kind}", params={"_id": ident}, content=body(current),
                                       headers={"Content-Type": FHIR_JSON})
    assert conditional.status_code == 200 and parse(conditional)["meta"]["versionId"] == "4", conditional.text

    batch = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"{kind}/{ident}"}},
        {"resource": _sample(kind), "request": {"method": "POST", "url": kind}}]}
    answered = await post(big_client, "", batch)
    assert answered.status_code == 200, answered.text
    assert [e["response"]["status"][:3] for e in parse(answered)["entry"]] == ["200", "201"]

    deleted = await big_client.delete(f"/fhir/{kind}", params={"_id": ident})
    assert deleted.status_code == 204, deleted.text
    assert (await big_client.get(url)).status_code == 410


async def test_capability_statement_lists_every_type_with_only_evaluable_parameters(
        client: httpx.AsyncClient) -> None:
    statement = parse(await client.get("/fhir/metadata"))
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == set(SERVED_TYPES)
    encounter = {p["name"]: p["type"] for p in resources["Encounter"]["searchParam"]}
    assert {"patient": "reference", "date": "date", "class": "token", "length": "quantity"}.items() <= (
        encounter.items())
    observation = {p["name"]: p["type"] for p in resources["Observation"]["searchParam"]}
    assert observation["code-value-quantity"] == "composite"
    for resource in resources.values():
        # Location's near is not evaluated; _has, _list and _filter are the search framework's own (search.html#has,
        # #list, search_filter.html)
        assert {p["name"] for p in resource["searchParam"] if p["type"] == "special"} == {"_has", "_list", "_filter"}
