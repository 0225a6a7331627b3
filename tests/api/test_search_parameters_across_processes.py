"""A SearchParameter created through one server process takes effect in every other process for their next
writes and searches, without a restart: the registry follows the conformance epoch in the database."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import parse, post, unique


def alias_parameter(code: str) -> dict[str, Any]:
    """A string SearchParameter ``code`` on ``Organization.alias``."""
    return {"resourceType": "SearchParameter", "url": f"https://example.org/SearchParameter/{code}",
            "name": "Alias", "status": "active", "description": "Organization alias", "code": code,
            "base": ["Organization"], "type": "string", "expression": "Organization.alias"}


async def test_search_parameter_defined_in_one_process_works_in_another(
        client: httpx.AsyncClient, registry_client: httpx.AsyncClient) -> None:
    code = unique("alias-")
    assert (await post(client, "SearchParameter", alias_parameter(code))).status_code == 201
    marker = unique("Zeta")
    # written through the other process: its index values must already include the new parameter
    created = await post(registry_client, "Organization",
                         {"resourceType": "Organization", "name": "CHU", "alias": [marker]})
    assert created.status_code == 201
    for process in (registry_client, client):
        found = parse(await process.get(f"/fhir/Organization?{code}={marker}", headers={"Prefer": "handling=strict"}))
        assert [e["resource"]["id"] for e in found["entry"]] == [parse(created)["id"]]
