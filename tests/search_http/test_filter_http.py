"""``_filter`` over HTTP (https://hl7.org/fhir/R4/search_filter.html): what a client is told when a filter cannot
be served. Its matches are rows of the golden table (``tests/search/golden_search.py``); here, the answers to bad
filters, the self link, and the isolation of a chained filter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import parse


async def _refused(client: httpx.AsyncClient, resource_type: str, text: str, **headers: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/{resource_type}", params={"_filter": text}, headers=headers)
    assert response.status_code == 400, response.text
    outcome = parse(response)
    assert outcome["resourceType"] == "OperationOutcome"
    return dict(outcome["issue"][0])


@pytest.mark.parametrize(("text", "said"), [
    ("family eq", "expected a space after 'eq' at character 10"),
    ("family is smith", "'is' is not a comparison operator"),
    ("(family eq smith", "expected ')'"),
    ("family eq smith and", "expected a parameter name"),
    ('family eq "smith', "a JSON string is not closed"),
    ("gender pr maybe", "pr takes true or false"),
    ("birthdate ge yesterday", "birthdate"),
])
async def test_a_malformed_filter_is_400_saying_where(client: httpx.AsyncClient, text: str, said: str) -> None:
    issue = await _refused(client, "Patient", text)
    assert issue["code"] == "invalid"
    assert said in issue["diagnostics"]


@pytest.mark.parametrize(("text", "said"), [
    ("gender co fem", "'co' does not apply to a token parameter"),
    ("birthdate sw 19", "'sw' does not apply to a date parameter"),
    ("family po 2020", "'po' does not apply to a string parameter"),
    ("link[type eq seealso].other re Patient/1", "[filter] paths"),
    ("gender eq male or general-practitioner.name eq smith", "may only be one of the filter's top-level 'and' terms"),
    ("not (general-practitioner.name eq smith)", "top-level 'and' terms"),
])
async def test_a_filter_the_server_cannot_serve_is_400_not_supported(client: httpx.AsyncClient, text: str,
                                                                      said: str) -> None:
    issue = await _refused(client, "Patient", text)
    assert issue["code"] == "not-supported"
    assert said in issue["diagnostics"]


async def test_an_unknown_parameter_in_a_filter_is_400_even_when_lenient(client: httpx.AsyncClient) -> None:
    """Ignoring one test of an ``or`` or a ``not`` would change what the filter means: never ignored."""
    issue = await _refused(client, "Patient", "gender eq male or shoe-size gt 40", Prefer="handling=lenient")
    assert issue["code"] == "not-supported"
    assert "no search parameter 'shoe-size' on Patient" in issue["diagnostics"]


async def test_the_self_link_shows_the_filter_applied(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Patient", params={"_filter": 'family eq "o\'brien" or gender eq other'})
    assert response.status_code == 200, response.text
    [self_link] = [link["url"] for link in parse(response)["link"] if link["relation"] == "self"]
    assert "_filter=family%20eq%20%22o%27brien%22%20or%20gender%20eq%20other" in self_link
    again = await client.get(self_link)
    assert again.status_code == 200 and parse(again).get("total") == parse(response).get("total")


async def test_the_capability_statement_lists_filter_as_a_special_parameter(client: httpx.AsyncClient) -> None:
    statement = parse(await client.get("/fhir/metadata"))
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] == "AuditEvent":
            continue
        assert {"name": "_filter", "type": "special"}.items() <= next(
            p for p in resource["searchParam"] if p["name"] == "_filter").items()
