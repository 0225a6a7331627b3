"""A registry submission shaped like the data contract passes the registry's rules end to end."""

from __future__ import annotations

import random

import httpx

from tests.conftest import body, parse
from tests.synthetic import registry_bundle


async def test_contract_shaped_bundle_is_accepted_by_the_registry_server(registry_client: httpx.AsyncClient) -> None:
    bundle, _facts = registry_bundle(1, random.Random(77))
    r = await registry_client.post("/fhir", content=body(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert all(e["response"]["status"].startswith("201") for e in parse(r)["entry"])
