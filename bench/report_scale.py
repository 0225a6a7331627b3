"""How ``$registry-report`` grows with the registry (issue #14 item 4): seeds databases of N patients fast (the
exact stored documents, centers included: ``bench/search.py``'s ``stored_writes``/``load``/``build_indexes``)
and times the report's computation in-process (``registry_report``: the aggregation and the sections; the
HTTP layer adds a MeasureReport of a few KB), as the system and as one center's ehr client. Keeps the
databases (``bench_report_<N>``) on ``FHIR_MONGODB_URI`` so that the server can be changed and timed again.

The report is served from the per-patient rows kept at write time (``storage/report_rows.py``): a seeded
database gets them by a rebuild (timed, as ``fhir-server rebuild-report-rows`` would), and each size is timed
both ways, ``rows`` (served) and ``sources`` (the aggregation of the source resources, as before; ``--only``).

    FHIR_MONGODB_URI=... .venv/bin/python bench/report_scale.py --patients 2000,10000,20000 [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search import build_indexes, load, stored_writes
from fhir_server.context import RequestContext
from fhir_server.permissions import Role
from fhir_server.reports.build import registry_report
from fhir_server.reports.model import Filters
from fhir_server.reports.pipeline import ROW_DEFINITION, report_pipeline
from fhir_server.reports.terminology import report_codes
from fhir_server.search import SearchParameterRegistry
from fhir_server.storage.aggregation import guarded
from fhir_server.storage.report_rows import PendingRows
from fhir_server.storage.store import ResourceStore


def seed(uri: str, sizes: list[int], rebuild: bool) -> None:
    """Load ``bench_report_<N>`` for each size still empty; one synthetic run of the largest, cut per size
    (patient n was stored at 2026-01-01 + n seconds by ``stored_writes``)."""
    client: MongoClient[Any] = MongoClient(uri)
    missing = [n for n in sizes if rebuild or client[f"bench_report_{n}"]["Patient"].estimated_document_count() == 0]
    if not missing:
        return
    registry = SearchParameterRegistry.load_default()
    started = time.perf_counter()
    writes, _ = stored_writes(max(missing), registry)
    print(f"prepared {len(writes)} resources in {time.perf_counter() - started:.0f} s", flush=True)
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    for n in missing:
        client.drop_database(f"bench_report_{n}")
        cut = [w for w in writes if w.last_updated < origin + timedelta(seconds=n)]
        started = time.perf_counter()
        load(uri, f"bench_report_{n}", cut)
        asyncio.run(build_indexes(uri, f"bench_report_{n}", registry))
        print(f"bench_report_{n}: {n} patients, {len(cut)} resources loaded and indexed in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    client.close()


async def time_report(uri: str, n: int, runs: int, explain: bool, ways: list[str]) -> None:
    store = ResourceStore.open(uri, f"bench_report_{n}")
    try:
        await store.ensure_indexes(search_indexes_default())  # the server's start-up (new indexes included)
        system = RequestContext.system()
        center = await _a_center(store, system)
        scoped = RequestContext(base_url=system.base_url, caller="bench-ehr", center=center, role=Role.EHR)
        mongod_pid = int((await store._db.client.admin.command("serverStatus"))["pid"])
        store.report_rows.keep(ROW_DEFINITION)
        if not await store.report_rows.up_to_date():  # seeded around the server: rebuild, as its start would
            start, start_mongod = time.perf_counter(), _cpu_of(mongod_pid)
            await store.report_rows.rebuild()
            print(f"{n:>7} patients  rows rebuilt in {time.perf_counter() - start:.1f} s  "
                  f"mongod cpu {_cpu_of(mongod_pid) - start_mongod:.1f} s", flush=True)
        for way, (label, ctx) in ((w, c) for w in ways for c in (("system", system), (f"ehr {center}", scoped))):
            # ``sources``: no rows kept, so the report aggregates the source resources (the server before them)
            store.report_rows.definition = ROW_DEFINITION if way == "rows" else None
            label = f"{way:7} {label}"
            times, cpu, mongod_cpu = [], [], []
            for _ in range(runs):
                start, start_cpu, start_mongod = time.perf_counter(), time.process_time(), _cpu_of(mongod_pid)
                report = await registry_report(ctx, store, Filters())
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                mongod_cpu.append(_cpu_of(mongod_pid) - start_mongod)
            times.sort()
            print(f"{n:>7} patients  {label:20} report median {times[len(times) // 2] * 1000:7.0f} ms  "
                  f"min {times[0] * 1000:7.0f} ms  mongod cpu min {min(mongod_cpu) * 1000:6.0f} ms  "
                  f"(python cpu {min(cpu) * 1000:.0f} ms)  total {report.total}", flush=True)
        store.report_rows.definition = ROW_DEFINITION
        await _time_refresh(store, n, mongod_pid)
        if explain:
            await _explain(store, system)
    finally:
        await store.close()


async def _time_refresh(store: ResourceStore, n: int, mongod_pid: int) -> None:
    """The write path's share: a row recomputed and upserted in a transaction, for one patient (a transaction
    Bundle's) 20 times, and for 200 patients at once (a bulk batch's)."""
    sample = await store._db["report_rows"].aggregate([{"$sample": {"size": 220}}, {"$project": {"_id": 1}}])
    ids = [row["_id"].removeprefix("Patient/") async for row in sample]
    for label, groups in (("1 patient x 20", [[i] for i in ids[:20]]), ("200 patients", [ids[20:220]])):
        start, start_mongod = time.perf_counter(), _cpu_of(mongod_pid)
        for group in groups:
            await store.run_transaction(functools.partial(_refresh, store, group))
        print(f"{n:>7} patients  refresh {label:15} {(time.perf_counter() - start) * 1000:7.0f} ms  "
              f"mongod cpu {(_cpu_of(mongod_pid) - start_mongod) * 1000:6.0f} ms", flush=True)


async def _refresh(store: ResourceStore, ids: list[str], session: Any) -> None:
    await store.report_rows.refresh(PendingRows(set(ids)), session)  # stored patients: rows from the collections


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a local process so far (proc(5)); the mongod must run on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def search_indexes_default() -> Any:
    from fhir_server.bootstrap import search_indexes
    return search_indexes(SearchParameterRegistry.load_default())


async def _a_center(store: ResourceStore, ctx: RequestContext) -> str:
    rows = await store.aggregate(ctx, "Patient", [{"$group": {"_id": "$center", "n": {"$sum": 1}}},
                                                  {"$sort": {"n": -1}}, {"$limit": 1}])
    return str(rows[0]["_id"])


async def _explain(store: ResourceStore, ctx: RequestContext) -> None:
    codes = await report_codes(ctx, store)
    pipeline = guarded("Patient", report_pipeline(Filters(), codes), store._read_filters(ctx))
    plan = await store._db.command({"explain": {"aggregate": "Patient", "pipeline": pipeline, "cursor": {}},
                                    "verbosity": "executionStats"})
    for stage in plan.get("stages", []):
        name = next(k for k in stage if k.startswith("$"))
        summary = {k: stage[k] for k in ("nReturned", "executionTimeMillisEstimate", "totalDocsExamined",
                                         "totalKeysExamined", "collectionScans", "indexesUsed") if k in stage}
        print(f"    {name:12} {json.dumps(summary, default=str)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", default="2000,10000,20000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="load the databases again")
    parser.add_argument("--only", choices=("rows", "sources"), help="time one way only (default: both)")
    args = parser.parse_args()
    uri = os.environ["FHIR_MONGODB_URI"]
    sizes = [int(s) for s in args.patients.split(",")]
    seed(uri, sizes, args.rebuild)
    for n in sizes:
        asyncio.run(time_report(uri, n, args.runs, args.explain, [args.only] if args.only else ["sources", "rows"]))


if __name__ == "__main__":
    main()
