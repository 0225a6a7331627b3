"""Bulk export benchmark: N synthetic registry patients, then one ``$export``; resources/s and peak RSS.

Loading goes through the server's own write path over HTTP: ``fhir-server serve`` (2 uvicorn workers) receives
one transaction Bundle per patient (``tests.synthetic.registry_bundle``, about 14 resources each) from
C concurrent clients; Bundles are generated as they are sent, never all held at once.

The export then runs in a *fresh* process (this script with ``--child``) that builds the app in-process, kicks
off ``[base]/$export`` (or ``Patient/$export``) through the ASGI transport and waits for the background task.
A fresh process makes its peak RSS (``getrusage`` ``ru_maxrss``, and ``VmRSS`` sampled every 50 ms) the
export's own, not the loader's. Flat memory means the peak stays close to the process's RSS before the export,
whatever N.

    .venv/bin/python bench/export.py --patients 10000
    .venv/bin/python bench/export.py --patients 10000 --raw      # seed with raw PyMongo inserts (fast)
    FHIR_MONGODB_URI=... .venv/bin/python bench/export.py --patients 10000 --db exp10000   # keep, reuse

``--raw`` seeds the database as ``bench/search.py`` does (``stored_writes``/``load``/``build_indexes``: the
exact documents the server stores, centers included) instead of through the server: minutes instead of hours
for tens of thousands of patients, when the export, not the ingest, is measured. ``--db`` (with
``FHIR_MONGODB_URI``) uses and keeps that database, seeding it raw when it has no patients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fhir_server, mongod
from fhir_server import fhirjson
from tests.synthetic import registry_cohort

# -- loading -------------------------------------------------------------------------------------------------


async def load(base: str, patients: int, clients: int, seed: int) -> tuple[int, float]:
    """POST one transaction Bundle per patient; (resources written, seconds)."""
    cohort: Iterator[tuple[dict[str, Any], Any]] = registry_cohort(patients, seed)
    written = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def worker() -> None:
            nonlocal written
            for bundle, _facts in cohort:  # the generator is shared: each Bundle goes to one worker
                r = await client.post(base, content=fhirjson.dumps(bundle),
                                      headers={"Content-Type": "application/fhir+json"})
                if r.status_code != 200:
                    raise RuntimeError(f"transaction failed: {r.status_code} {r.text[:300]}")
                written += len(bundle["entry"])

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
    return written, time.perf_counter() - start


# -- the export, in a fresh process --------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())


async def child(uri: str, db: str, path: str) -> dict[str, Any]:
    from fhir_server.api import bulk_files
    from fhir_server.api.app import create_app
    from fhir_server.bootstrap import start_services
    from fhir_server.bulk import operation, runner
    from fhir_server.settings import Settings

    settings = Settings(mongodb_uri=uri, mongodb_db=db,
                        auth_mode="none")  # in-process, no tokens: ingest.py and search.py time them
    services = await start_services(settings, uri)
    operation.register(services.operations)
    app = create_app(settings, services)
    if not any(getattr(r, "path", "") == "/fhir/_export/{job_id}/files/{file_name}" for r in app.routes):
        app.include_router(bulk_files.router)  # until create_app includes it
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
            before = rss_mb()
            sampler = RssSampler()
            sampler.start()
            start = time.perf_counter()
            cpu_start = time.process_time()
            kick = await client.get(f"/fhir/{path}", headers={"Prefer": "respond-async",
                                                                "Accept": "application/fhir+json"})
            assert kick.status_code == 202, kick.text
            status_url = kick.headers["content-location"].replace("http://bench", "")
            await runner.wait(status_url.rsplit("=", 1)[1])
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            sampler.stop.set()
            done = await client.get(status_url)
            assert done.status_code == 200, done.text
            manifest = json.loads(done.content)
        size = await _exported_bytes(uri, db, status_url.rsplit("=", 1)[1])
        resources = sum(item["count"] for item in manifest["output"])
        return {"resources": resources, "seconds": seconds, "cpu_seconds": cpu, "files": len(manifest["output"]),
                "megabytes": size / 2**20, "rss_before_mb": before, "rss_peak_mb": sampler.peak,
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "by_type": _counts_by_type(manifest["output"])}
    finally:
        await services.close()


def _counts_by_type(output: list[dict[str, Any]]) -> dict[str, int]:
    """Resources per type, over all of a type's files (one per ``MAX_PER_FILE`` resources)."""
    counts: dict[str, int] = {}
    for item in output:
        counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
    return counts


async def _exported_bytes(uri: str, db: str, job_id: str) -> int:
    """The size of the export's NDJSON files, kept in the GridFS bucket ``export`` (ids ``<job>/...``)."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(uri)
    try:
        files = client[db]["export.files"].find({"_id": {"$regex": f"^{job_id}/"}}, {"length": 1})
        return sum([doc["length"] async for doc in files])
    finally:
        await client.close()


def run_child(uri: str, db: str, path: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", "--uri", uri, "--db", db, "--path", path],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, r: dict[str, Any]) -> None:
    by_type = {k: v for k, v in sorted(r["by_type"].items(), key=lambda kv: kv[0])}
    print(f"{label}: {r['resources']} resources in {r['seconds']:.1f} s = {r['resources'] / r['seconds']:.0f} "
          f"resources/s ({r['cpu_seconds']:.1f} s CPU in the export process = "
          f"{r['resources'] / r['cpu_seconds']:.0f} resources per CPU second); "
          f"{r['files']} files, {r['megabytes']:.0f} MB NDJSON")
    print(f"  by type: {by_type}")
    print(f"  export process RSS: {r['rss_before_mb']:.0f} MB before kick-off, peak {r['rss_peak_mb']:.0f} MB "
          f"(sampled), ru_maxrss {r['ru_maxrss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the loading server")
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--raw", action="store_true", help="seed with raw PyMongo inserts, not over HTTP")
    parser.add_argument("--db", help="with FHIR_MONGODB_URI: use (and keep) this database, seeding it raw if empty")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="$export", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.uri, args.db, args.path))))
        return

    print(f"{args.patients} patients, {args.clients} clients, {args.workers} server workers, {os.cpu_count()} cores")
    if args.db:
        uri = os.environ["FHIR_MONGODB_URI"]
        if MongoClient(uri)[args.db]["Patient"].estimated_document_count() == 0:
            load_raw(uri, args.db, args.patients)
        export_both(uri, args.db)
        return
    with mongod() as uri:
        db = f"bench_export_{uuid.uuid4().hex[:6]}"
        if args.raw:
            load_raw(uri, db, args.patients)
        else:
            with fhir_server(uri, db, args.workers, auth=False) as server:  # loading only: export is timed in-process
                written, seconds = asyncio.run(load(server.base, args.patients, args.clients, args.seed))
            print(f"load (HTTP transaction Bundles): {written} entries in {seconds:.1f} s = "
                  f"{written / seconds:.0f} entries/s (conditional creates of existing centers write nothing)")
        export_both(uri, db)


def load_raw(uri: str, db: str, patients: int) -> None:
    """The stored documents of ``patients`` registry patients, inserted with PyMongo (bench/search.py)."""
    from bench.search import build_indexes, stored_writes
    from bench.search import load as insert_raw
    from fhir_server.search import SearchParameterRegistry

    start = time.perf_counter()
    registry = SearchParameterRegistry.load_default()
    writes, _ = stored_writes(patients, registry)
    insert_raw(uri, db, writes)
    asyncio.run(build_indexes(uri, db, registry))
    print(f"load (raw PyMongo, bench/search.py): {len(writes)} resources in {time.perf_counter() - start:.0f} s")


def export_both(uri: str, db: str) -> None:
    report("system $export", run_child(uri, db, "$export"))
    report("Patient/$export", run_child(uri, db, "Patient/$export"))


if __name__ == "__main__":
    main()
