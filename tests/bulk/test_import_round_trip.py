"""An ``$export`` of this server loads back into an empty one unchanged: seed, export, clean the database, load
the exported NDJSON with ``$import``, and compare every resource byte for byte but for ``meta.versionId`` and
``meta.lastUpdated`` (which the load stamps anew)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.resources import CLINICAL_TYPES
from fhir_server.storage.documents import CLAIMS, HISTORY
from tests.bulk import data
from tests.bulk.conftest import create, export
from tests.bulk.test_import import import_dir, ndjson, parameters, run_import  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("empty_db")


async def seed(client: httpx.AsyncClient) -> None:
    """An organization and three patients with a registration, a lab (exact decimals) and a diagnosis."""
    org = await create(client, data.organization())
    for i in range(3):
        p = await create(client, {**data.patient(f"FR-POI-{i:04d}"),
                                  "managingOrganization": {"reference": f"Organization/{org['id']}"}})
        await create(client, data.registration(p["id"], "toxicity"))
        await create(client, data.lab(p["id"], value="1.50"))
        await create(client, data.diagnosis(p["id"]))


def comparable(resource: dict[str, Any]) -> bytes:
    """The resource as bytes, without the version stamps a load renews."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return fhirjson.dumps({**resource, "meta": meta})


async def wipe(db: AsyncDatabase) -> None:
    for resource_type in CLINICAL_TYPES:
        await db[resource_type].delete_many({})
    await db[HISTORY].delete_many({"type": {"$in": list(CLINICAL_TYPES)}})
    await db[CLAIMS].delete_many({})


async def exported_files(bulk: httpx.AsyncClient, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Seed, export, write one NDJSON file per type into ``folder``: what was exported."""
    await seed(bulk)
    exported = await export(bulk, "$export?_type=Organization,Patient,Observation,Condition")
    for kind, resources in exported.items():
        (folder / f"{kind}.ndjson").write_bytes(ndjson(resources))
    return exported


async def check_loaded(client: httpx.AsyncClient, exported: dict[str, list[dict[str, Any]]]) -> None:
    for kind, resources in exported.items():
        for resource in resources:
            response = await client.get(f"/fhir/{kind}/{resource['id']}")
            assert response.status_code == 200, response.text
            loaded = fhirjson.loads(response.content)
            assert loaded["meta"]["versionId"] == "1"
            assert comparable(loaded) == comparable(resource)
        total = (await client.get(f"/fhir/{kind}", params={"_total": "accurate", "_count": "0"})).json()["total"]
        assert total == len(resources)


async def test_an_export_loads_back_unchanged_with_import(bulk: httpx.AsyncClient, db: AsyncDatabase,
                                                          import_dir: Path) -> None:  # noqa: F811
    exported = await exported_files(bulk, import_dir)
    assert set(exported) == {"Organization", "Patient", "Observation", "Condition"}
    await wipe(db)
    manifest = await run_import(bulk, parameters(*(f"{kind}.ndjson" for kind in sorted(exported))))
    assert manifest["error"] == []
    assert sum(o["count"] for o in manifest["output"]) == sum(len(r) for r in exported.values())
    await check_loaded(bulk, exported)
