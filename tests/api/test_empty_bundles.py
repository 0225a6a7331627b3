"""A Bundle the server answers with has no ``entry`` when it has no entry: FHIR JSON has no empty arrays
(https://hl7.org/fhir/R4/json.html), and the server refuses ``"entry": []`` in what it is sent, so what it sends
must be something it would accept back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import FHIR_JSON, body, parse, post, unique


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/{url}")
    assert response.status_code == 200, response.text
    return parse(response)  # type: ignore[no-any-return]


async def test_a_search_without_matches_has_a_total_of_zero_and_no_entry(client: httpx.AsyncClient) -> None:
    bundle = await get(client, f"Patient?identifier=urn:test|{unique()}")
    assert bundle["total"] == 0 and "entry" not in bundle


async def test_count_zero_gives_the_total_and_no_entry(client: httpx.AsyncClient) -> None:
    marker = unique()
    await post(client, "Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": marker}]})
    bundle = await get(client, f"Patient?identifier=urn:test|{marker}&_count=0")
    assert bundle["total"] == 1 and "entry" not in bundle


async def test_a_history_with_nothing_since_has_no_entry(client: httpx.AsyncClient) -> None:
    created = parse(await post(client, "Patient", {"resourceType": "Patient"}))
    bundle = await get(client, f"Patient/{created['id']}/_history?_since=2999-01-01")
    assert bundle["type"] == "history" and "entry" not in bundle


async def test_a_batch_without_entries_answers_a_batch_response_without_entry(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir", content=body({"resourceType": "Bundle", "type": "batch"}),
                                 headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    assert parse(response) == {"resourceType": "Bundle", "type": "batch-response"}


async def test_an_empty_search_bundle_is_accepted_back_as_a_collection(client: httpx.AsyncClient) -> None:
    bundle = await get(client, f"Patient?identifier=urn:test|{unique()}")
    collection = {k: v for k, v in bundle.items() if k not in ("total", "link")} | {"type": "collection"}
    stored = await post(client, "Bundle", collection)
    assert stored.status_code == 201, stored.text
