"""What the audit trail costs a search (issue #11 item 14), in-process, by CPU: each ``bench/search.py`` query
through the real app (httpx's ASGI transport, ``FHIR_AUTH_MODE=none``) against a throw-away mongod, with the
audit trail off and on, interleaved. A pass's CPU (``time.process_time``: the server's side only, mongod runs in
its own process) includes the background writer's flushes (the pass ends with ``AuditLog.flush``), so the
difference is everything an audited search adds: the event built at request time, its search values, its BSON
encoding and insert. ``--profile N`` prints the top N functions of the audited passes under cProfile.

    .venv/bin/python bench/profile_audit.py --patients 2000 --repeat 200
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod, percentiles
from bench.cpu import snapshot
from bench.search import Queries, build_indexes, http_url, load, stored_writes
from fhir_server.api.app import create_app
from fhir_server.bootstrap import start_services
from fhir_server.search import SearchParameterRegistry
from fhir_server.settings import Settings
from fhir_server.storage.client import CODEC_OPTIONS

ROWS = ("(a) ", "(c) ", "(d) ", "(e) ")


mongod_seconds: list[float] = []  # mongod's CPU seconds of each pass
pauses: list[tuple[int, float]] = []  # (generation, ms) of the cyclic collector's passes during a pass
_gc_started = [0.0]


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        pauses.append((info["generation"], (time.perf_counter() - _gc_started[0]) * 1000))


async def one_pass(uri: str, db_name: str, audited: bool, urls: list[str],
                   profiler: cProfile.Profile | None) -> tuple[float, list[float]]:
    """CPU seconds of ``urls`` requested one after the other (and of writing their events), and each request's
    wall time in ms."""
    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, auth_mode="none", audit_enabled=audited)
    services = await start_services(settings, uri)
    app = create_app(settings, services=services)
    gc.collect()  # as the app's lifespan does after start-up
    gc.freeze()
    wall: list[float] = []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            for url in urls[:10]:  # warm-up
                await http.get(url)
            if services.audit_log is not None:
                await services.audit_log.flush()
            if profiler is not None:
                profiler.enable()
            pauses.clear()
            mongod_cpu = _mongod_cpu()
            cpu = time.process_time()
            for url in urls:
                start = time.perf_counter()
                r = await http.get(url)
                wall.append((time.perf_counter() - start) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            if services.audit_log is not None:
                await services.audit_log.flush()
            cpu = time.process_time() - cpu
            mongod_seconds.append(_mongod_cpu() - mongod_cpu)
            if profiler is not None:
                profiler.disable()
    finally:
        await services.close()
    gc.unfreeze()
    return cpu, wall


def _mongod_cpu() -> float:
    """CPU seconds of the mongod this process started (``bench/cpu.py``'s /proc reading)."""
    me = os.getpid()
    return sum(p.cpu for p in snapshot().values() if p.ppid == me and "mongod" in p.cmdline.split(" ", 1)[0])


def _pauses(ms: list[float]) -> str:
    return f"{len(ms)} x {max(ms, default=0):.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=200, help="requests per query and pass")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs per query")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions of the audited passes")
    parser.add_argument("--profile-file", help="also write the audited passes' profile here (pstats format)")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key of --profile")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    gc.callbacks.append(_time_collections)
    registry = SearchParameterRegistry.load_default()
    writes, pseudonyms = stored_writes(args.patients, registry)
    profiler = cProfile.Profile() if args.profile else None
    with mongod() as uri:
        db_name = f"bench_audit_{uuid.uuid4().hex[:6]}"
        load(uri, db_name, writes)
        asyncio.run(build_indexes(uri, db_name, registry))
        del writes
        client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
        queries = Queries(client[db_name], pseudonyms, args.seed)
        print(f"{args.patients} patients; {args.repeat} requests per pass; CPU ms per request, wall p50/p95 ms")
        print(f"{'query':44} {'off cpu':>8} {'on cpu':>8} {'+':>6}   {'off p50/p95':>12} {'on p50/p95':>12}   "
              "mongod off/on   full GC passes, longest: off / on")
        for name, make, _ in queries.cases():
            if not name.startswith(ROWS):
                continue
            urls = [http_url("http://bench/fhir", make()) for _ in range(args.repeat)]
            cpu: dict[bool, list[float]] = {False: [], True: []}
            wall: dict[bool, list[float]] = {False: [], True: []}
            full: dict[bool, list[float]] = {False: [], True: []}  # full collections' pauses, ms
            db_cpu: dict[bool, list[float]] = {False: [], True: []}  # mongod's CPU ms per request
            for _ in range(args.rounds):
                for audited in (False, True):
                    seconds, times = asyncio.run(one_pass(uri, db_name, audited, urls,
                                                          profiler if audited else None))
                    cpu[audited].append(seconds * 1000 / len(urls))
                    wall[audited] += times
                    full[audited] += [ms for generation, ms in pauses if generation == 2]
                    db_cpu[audited].append(mongod_seconds[-1] * 1000 / len(urls))
            off, on = min(cpu[False]), min(cpu[True])
            (f50, f95), (n50, n95) = percentiles(wall[False]), percentiles(wall[True])
            print(f"{name:44} {off:8.2f} {on:8.2f} {(on - off) / off:+6.0%}   {f50:5.1f}/{f95:5.1f}   "
                  f"{n50:5.1f}/{n95:5.1f}   {min(db_cpu[False]):5.2f} {min(db_cpu[True]):5.2f}   "
                  f"{_pauses(full[False])} / {_pauses(full[True])}")
        client.close()
    if profiler is not None:
        if args.profile_file:
            profiler.dump_stats(args.profile_file)
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)


if __name__ == "__main__":
    main()
