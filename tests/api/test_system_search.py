"""System-level search, GET and POST (https://hl7.org/fhir/R4/http.html#search)."""

from __future__ import annotations

import httpx


async def test_system_level_post_search(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir/_search", content=b"_type=Patient&_count=1",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert response.json()["type"] == "searchset"
