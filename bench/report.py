"""Load N synthetic registry patients (one transaction each) and time ``$registry-report`` (JSON, CSV) and
the ``/report`` page. Usage: ``python bench/report.py [N]`` (default 567, the registry letter's count)."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_server import fhirjson
from fhir_server.api.app import create_app
from fhir_server.api.report_page import report_router
from fhir_server.bootstrap import start_services
from fhir_server.reports import operation
from fhir_server.settings import Settings
from fhir_server.storage.mongod import LocalMongod, free_port
from tests.synthetic import registry_cohort


async def _timed(client: httpx.AsyncClient, url: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = await client.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text[:500]
    return statistics.median(times) * 1000


async def run(count: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ifp-bench-report-"))
    mongod = LocalMongod(data_dir, free_port(), cache_gb=0.5)
    mongod.start()
    try:
        settings = Settings(mongodb_uri=mongod.uri, mongodb_db=f"bench_{uuid.uuid4().hex[:6]}",
                            auth_mode="none")  # in-process, no tokens: ingest.py and search.py time them
        services = await start_services(settings, mongod.uri)
        if not services.operations.known("registry-report"):
            operation.register(services.operations)
        app = create_app(settings, services)
        app.include_router(report_router)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client:
            start = time.perf_counter()
            entries = 0
            for bundle, _ in registry_cohort(count, seed=2008):
                entries += len(bundle["entry"])
                r = await client.post("/fhir", content=fhirjson.dumps(bundle),
                                      headers={"Content-Type": "application/fhir+json"})
                assert r.status_code == 200, r.text[:500]
            load = time.perf_counter() - start
            print(f"loaded {count} patients ({entries} resources) in {load:.1f} s "
                  f"({entries / load:.0f} resources/s, in-process ASGI, one client)")
            for label, url in (("$registry-report JSON", "/fhir/$registry-report"),
                               ("$registry-report CSV", "/fhir/$registry-report?_format=text/csv"),
                               ("$registry-report country=FR", "/fhir/$registry-report?country=FR"),
                               ("/report HTML", "/report")):
                print(f"{label}: median {await _timed(client, url):.0f} ms")
        await services.close()
    finally:
        mongod.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 567))
