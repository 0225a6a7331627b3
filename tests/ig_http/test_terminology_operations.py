"""Issue 4, item 5: terminology operations over HTTP (Parameters in and out, type and instance level, GET and
POST): CodeSystem $lookup/$subsumes/$validate-code, ValueSet $expand/$validate-code, ConceptMap $translate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import parse, post
from tests.ig_http.helpers import REASON, B

VS_REASONS = f"{B}/ValueSet/ifp-registration-reasons"
ATC = "http://www.whocc.no/atc"
FAILURES = {"no-chr-3m", "no-cyr-6m", "no-mcyr-12m", "hematologic-relapse", "cytogenetic-relapse",
            "progression-ap-bc"}


def out(response: httpx.Response) -> dict[str, list[Any]]:
    """Parameters -> {name: [value or parts]}."""
    assert response.status_code == 200, response.text
    body = parse(response)
    assert body["resourceType"] == "Parameters", body
    values: dict[str, list[Any]] = {}
    for p in body["parameter"]:
        value = p["part"] if "part" in p else next(v for k, v in p.items() if k.startswith("value"))
        values.setdefault(p["name"], []).append(value)
    return values


def parts(part_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in part_list}


def params(*items: tuple[str, str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": n, f"value{t}": v} for n, t, v in items]}


async def test_lookup_get_and_post(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/CodeSystem/$lookup", params={"system": REASON, "code": "no-cyr-6m"}))
    assert got["display"] == ["Not any CyR (after 6 months)"]
    assert got["version"] == ["0.1.0"] and got["name"]
    props = [parts(p) for p in got["property"]]
    assert {"code": "parent", "value": "failure"} in props
    posted = out(await post(client, "CodeSystem/$lookup", params(("coding", "Coding",
                                                                 {"system": REASON, "code": "failure"}))))
    children = {p["value"] for p in map(parts, posted["property"]) if p["code"] == "child"}
    assert children == FAILURES
    only = out(await client.get("/fhir/CodeSystem/$lookup",
                                params={"system": REASON, "code": "failure", "property": "parent"}))
    assert "property" not in only  # failure has no parent, and only 'parent' was asked for


async def test_lookup_at_instance_level_and_errors(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/CodeSystem/ifp-registration-reason/$lookup", params={"code": "toxicity"}))
    assert got["display"] == ["Toxicity (leading to discontinuation)"]
    assert (await client.get("/fhir/CodeSystem/$lookup", params={"system": REASON, "code": "nope"})).status_code == 404
    assert (await client.get("/fhir/CodeSystem/$lookup", params={"system": "urn:none", "code": "x"})).status_code == 404
    assert (await client.get("/fhir/CodeSystem/$lookup", params={"code": "x"})).status_code == 400
    assert (await client.get("/fhir/CodeSystem/no-such-id/$lookup", params={"code": "x"})).status_code == 404
    assert (await client.get("/fhir/ValueSet/$lookup", params={"code": "x"})).status_code in (404, 405)


@pytest.mark.parametrize(("a", "b", "outcome"), [
    ("failure", "no-cyr-6m", "subsumes"), ("no-cyr-6m", "failure", "subsumed-by"),
    ("toxicity", "toxicity", "equivalent"), ("toxicity", "no-cyr-6m", "not-subsumed")])
async def test_subsumes(client: httpx.AsyncClient, a: str, b: str, outcome: str) -> None:
    got = out(await client.get("/fhir/CodeSystem/$subsumes", params={"system": REASON, "codeA": a, "codeB": b}))
    assert got["outcome"] == [outcome]
    posted = out(await post(client, "CodeSystem/ifp-registration-reason/$subsumes",
                            params(("codingA", "Coding", {"system": REASON, "code": a}),
                                   ("codingB", "Coding", {"system": REASON, "code": b}))))
    assert posted["outcome"] == [outcome]


async def test_subsumes_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/CodeSystem/$subsumes", params={"system": REASON, "codeA": "failure", "codeB": "x"})
    assert r.status_code == 400
    assert (await client.get("/fhir/CodeSystem/$subsumes", params={"system": REASON, "codeA": "a"})).status_code == 400


async def test_expand_is_a_filter_and_paging(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/ValueSet/$expand", params={"url": VS_REASONS})
    assert r.status_code == 200
    expansion = parse(r)["expansion"]
    codes = {c["code"] for c in expansion["contains"]}
    assert codes == FAILURES | {"toxicity"} and expansion["total"] == 7  # is-a (descendent-of) + extensional
    first = parse(await client.get("/fhir/ValueSet/$expand", params={"url": VS_REASONS, "count": 3}))["expansion"]
    rest = parse(await client.get("/fhir/ValueSet/$expand",
                                  params={"url": VS_REASONS, "count": 10, "offset": 3}))["expansion"]
    assert len(first["contains"]) == 3 and len(rest["contains"]) == 4 and rest["offset"] == 3
    assert {c["code"] for c in first["contains"] + rest["contains"]} == codes
    filtered = parse(await post(client, "ValueSet/$expand", params(("url", "Uri", VS_REASONS),
                                                                   ("filter", "String", "relapse"))))["expansion"]
    assert {c["code"] for c in filtered["contains"]} == {"hematologic-relapse", "cytogenetic-relapse"}
    instance = parse(await client.get("/fhir/ValueSet/ifp-registration-reasons/$expand"))
    assert instance["expansion"]["total"] == 7


async def test_expand_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/fhir/ValueSet/$expand", params={"url": "urn:none"})).status_code == 404
    assert (await client.get("/fhir/ValueSet/$expand")).status_code == 400
    r = await client.get("/fhir/ValueSet/$expand", params={"url": VS_REASONS, "count": "-1"})
    assert r.status_code == 400


async def test_value_set_validate_code(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/ValueSet/$validate-code",
                               params={"url": VS_REASONS, "system": REASON, "code": "no-chr-3m"}))
    assert got["result"] == [True] and got["display"] == ["No CHR (after 3 months)"]
    got = out(await client.get("/fhir/ValueSet/$validate-code",
                               params={"url": VS_REASONS, "system": REASON, "code": "failure"}))
    assert got["result"] == [False] and got["message"]
    got = out(await client.get("/fhir/ValueSet/$validate-code", params={
        "url": VS_REASONS, "system": REASON, "code": "toxicity", "display": "Something else"}))
    assert got["result"] == [True] and "differs" in got["message"][0]
    concept = {"coding": [{"system": REASON, "code": "failure"}, {"system": REASON, "code": "no-cyr-6m"}]}
    got = out(await post(client, "ValueSet/ifp-registration-reasons/$validate-code",
                         params(("codeableConcept", "CodeableConcept", concept))))
    assert got["result"] == [True]
    r = await client.get("/fhir/ValueSet/$validate-code", params={"url": "urn:none", "code": "x"})
    assert r.status_code == 404


async def test_code_system_validate_code(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/CodeSystem/$validate-code", params={"url": REASON, "code": "failure"}))
    assert got["result"] == [True]
    got = out(await client.get("/fhir/CodeSystem/ifp-registration-reason/$validate-code", params={"code": "zzz"}))
    assert got["result"] == [False]


async def test_translate(client: httpx.AsyncClient) -> None:
    got = out(await client.get("/fhir/ConceptMap/$translate", params={"system": ATC, "code": "L01XE01"}))
    assert got["result"] == [True]
    match = parts(got["match"][0])
    assert match["equivalence"] == "equivalent" and match["concept"]["code"] == "L01EA01"
    assert match["source"] == f"{B}/ConceptMap/atc-pre-2022"
    posted = out(await post(client, "ConceptMap/atc-pre-2022/$translate",
                            params(("coding", "Coding", {"system": ATC, "code": "L01XE08"}))))
    assert parts(posted["match"][0])["concept"]["code"] == "L01EA03"
    reverse = out(await client.get("/fhir/ConceptMap/$translate", params={
        "url": f"{B}/ConceptMap/atc-pre-2022", "system": ATC, "code": "L01EA01", "reverse": "true"}))
    assert parts(reverse["match"][0])["concept"]["code"] == "L01XE01"
    phase = out(await client.get("/fhir/ConceptMap/$translate", params={
        "system": f"{B}/CodeSystem/ifp-disease-phase", "code": "chronic",
        "targetsystem": "http://snomed.info/sct"}))
    assert parts(phase["match"][0])["concept"]["code"] == "278177007"
    none = out(await client.get("/fhir/ConceptMap/$translate", params={"system": ATC, "code": "L01EA01"}))
    assert none["result"] == [False]
    r = await client.get("/fhir/ConceptMap/$translate", params={"url": "urn:none", "system": ATC, "code": "x"})
    assert r.status_code == 404
    assert (await client.get("/fhir/ConceptMap/$translate", params={"code": "x"})).status_code == 400
