"""What the audit trail and tokens cost a search (issue #11 item 14), in-process, by CPU: each
``bench/search.py`` query through the real app (httpx's ASGI transport) against a throw-away mongod, interleaved
in three settings: ``neither`` (``FHIR_AUTH_MODE=none``, audit trail off), ``tokens`` (``smart``: every request
carries an admin client's access token, fetched by the backend-services flow; audit trail off) and
``tokens+audit`` (the defaults). A pass's CPU (``time.process_time``: the server's side only, mongod runs in its
own process) includes the background writer's flushes (the pass ends with ``AuditLog.flush``), so the difference
is everything an authenticated, audited search adds: the token's check, the event built at request time, its
search values, its BSON encoding and insert. ``--profile N`` prints the top N functions of the audited passes
under cProfile. The audit writer process's CPU (``FHIR_AUDIT_WRITER=process``, the default; ``/proc``) is printed
on its own (``writer process``, ms per request): the server's column no longer holds the writer's work.
``--overlap`` splits the audited passes' requests by whether a flush of the background writer was in progress
during them (``AuditLog.flush`` timed) and prints wall p50/p95 of each part: where the tail is.

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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH_CLIENT, mongod, percentiles
from bench.cpu import snapshot
from bench.search import Queries, build_indexes, http_url, load, stored_writes
from fhir_server.api.app import create_app
from fhir_server.bootstrap import start_services
from fhir_server.permissions import Role
from fhir_server.search import SearchParameterRegistry
from fhir_server.security.client import BackendServicesAuth
from fhir_server.security.registration import load_private_key, register_client
from fhir_server.settings import Settings
from fhir_server.storage.audit_log import AuditLog
from fhir_server.storage.audit_process import ProcessAuditLog
from fhir_server.storage.client import CODEC_OPTIONS

# the rows of bench/search.py timed by default (``--rows``; ``0`` is its floor, a request of no result)
ROWS = "a,b,c,d,e"
# (name, tokens, audit trail), in the order each round runs them
SETTINGS = (("neither", False, False), ("tokens", True, False), ("tokens+audit", True, True))


mongod_seconds: list[float] = []  # mongod's CPU seconds of each pass
writer_seconds: list[float] = []  # the audit writer process's CPU seconds of each pass (FHIR_AUDIT_WRITER=process)
pauses: list[tuple[int, float]] = []  # (generation, ms) of the cyclic collector's passes during a pass
_gc_started = [0.0]


flushes: list[tuple[float, float]] = []  # (start, end) perf_counter of each AuditLog.flush


def time_flushes() -> None:
    """Remember when each flush of the background writer ran (``--overlap``), in either writer."""
    for kind in (AuditLog, ProcessAuditLog):
        kind.flush = _timed(kind.flush)  # type: ignore[method-assign]


def _timed(original: Any) -> Any:
    async def timed(self: AuditLog) -> None:
        start = time.perf_counter()
        try:
            await original(self)
        finally:
            flushes.append((start, time.perf_counter()))
    return timed


def split_by_flush(requests: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """ms of the ``requests`` (start, end) during which a flush ran, and of the others."""
    during: list[float] = []
    outside: list[float] = []
    for start, end in requests:
        overlapped = any(f_start < end and start < f_end for f_start, f_end in flushes)
        (during if overlapped else outside).append((end - start) * 1000)
    return during, outside


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        pauses.append((info["generation"], (time.perf_counter() - _gc_started[0]) * 1000))


async def one_pass(uri: str, db_name: str, tokens: bool, audited: bool, urls: list[str],
                   profiler: cProfile.Profile | None, clients: Path, key_file: Path,
                   spans: list[tuple[float, float]] | None = None) -> tuple[float, list[float]]:
    """CPU seconds of ``urls`` requested one after the other (and of writing their events), and each request's
    wall time in ms. With ``tokens``, the first warm-up request fetches the token (client assertion, signature)."""
    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, auth_mode="smart" if tokens else "none",
                        clients_file=clients, audit_enabled=audited)
    services = await start_services(settings, uri)
    app = create_app(settings, services=services)
    gc.collect()  # as the app's lifespan does after start-up
    gc.freeze()
    wall: list[float] = []
    auth = BackendServicesAuth("http://bench/fhir", BENCH_CLIENT, load_private_key(key_file)) \
        if tokens else None
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     auth=auth) as http:
            for url in urls[:10]:  # warm-up
                await http.get(url)
            if services.audit_log is not None:
                await services.audit_log.flush()
            if profiler is not None:
                profiler.enable()
            pauses.clear()
            mongod_cpu, writer_cpu = _mongod_cpu(), _writer_cpu()
            cpu = time.process_time()
            for url in urls:
                start = time.perf_counter()
                r = await http.get(url)
                end = time.perf_counter()
                wall.append((end - start) * 1000)
                if spans is not None:
                    spans.append((start, end))
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            if services.audit_log is not None:
                await services.audit_log.flush()
            cpu = time.process_time() - cpu
            mongod_seconds.append(_mongod_cpu() - mongod_cpu)
            writer_seconds.append(_writer_cpu() - writer_cpu)
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


def _writer_cpu() -> float:
    """CPU seconds of this process's audit writer process (a ``multiprocessing`` child), 0 without one."""
    me = os.getpid()
    return sum(p.cpu for p in snapshot().values() if p.ppid == me and "spawn_main" in p.cmdline)


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
    parser.add_argument("--rows", default=ROWS, help=f"the rows of bench/search.py to time, by tag (default {ROWS})")
    parser.add_argument("--overlap", action="store_true",
                        help="also wall p50/p95 of audited requests during a flush of the writer and outside")
    args = parser.parse_args()
    if args.overlap:
        time_flushes()
    gc.callbacks.append(_time_collections)
    registry = SearchParameterRegistry.load_default()
    writes, pseudonyms = stored_writes(args.patients, registry)
    profiler = cProfile.Profile() if args.profile else None
    with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-bench-auth-") as folder:
        clients = Path(folder) / "clients.json"
        key_file = register_client(clients, BENCH_CLIENT, Role.ADMIN)
        db_name = f"bench_audit_{uuid.uuid4().hex[:6]}"
        load(uri, db_name, writes)
        asyncio.run(build_indexes(uri, db_name, registry))
        del writes
        client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
        queries = Queries(client[db_name], pseudonyms, args.seed)
        print(f"{args.patients} patients; {args.repeat} requests per pass, {args.rounds} rounds; server CPU ms per "
              "request (the lowest pass), + over neither; wall p50/p95 ms; mongod CPU ms per request")
        print(f"{'query':44} " + "   ".join(f"{name:>22}" for name, _, _ in SETTINGS)
              + "   " + "   ".join(f"{name + ' p50/p95':>24}" for name, _, _ in SETTINGS) + "   mongod "
              + "/".join(name for name, _, _ in SETTINGS) + "   full GC passes, longest")
        for name, make, _ in queries.cases():
            if name[1:name.index(")")] not in args.rows.split(","):
                continue
            urls = [http_url("http://bench/fhir", make()) for _ in range(args.repeat)]
            cpu: dict[str, list[float]] = {s: [] for s, _, _ in SETTINGS}
            wall: dict[str, list[float]] = {s: [] for s, _, _ in SETTINGS}
            full: dict[str, list[float]] = {s: [] for s, _, _ in SETTINGS}  # full collections' pauses, ms
            db_cpu: dict[str, list[float]] = {s: [] for s, _, _ in SETTINGS}  # mongod's CPU ms per request
            child_cpu: list[float] = []  # the audit writer process's CPU ms per request (tokens+audit)
            spans: list[tuple[float, float]] = []  # the audited requests' (start, end)
            for _ in range(args.rounds):
                for setting, tokens, audited in SETTINGS:
                    seconds, times = asyncio.run(one_pass(uri, db_name, tokens, audited, urls,
                                                          profiler if audited else None, clients, key_file,
                                                          spans if audited else None))
                    cpu[setting].append(seconds * 1000 / len(urls))
                    wall[setting] += times
                    full[setting] += [ms for generation, ms in pauses if generation == 2]
                    db_cpu[setting].append(mongod_seconds[-1] * 1000 / len(urls))
                    if audited:
                        child_cpu.append(writer_seconds[-1] * 1000 / len(urls))
            base = min(cpu["neither"])
            cells = [f"{min(cpu[s]):8.2f} ({(min(cpu[s]) - base) / base:+5.0%})" for s, _, _ in SETTINGS]
            walls = ["{:5.1f}/{:5.1f}".format(*percentiles(wall[s])) for s, _, _ in SETTINGS]
            print(f"{name:44} " + "   ".join(f"{c:>22}" for c in cells) + "   "
                  + "   ".join(f"{w:>24}" for w in walls) + "   "
                  + "/".join(f"{min(db_cpu[s]):.2f}" for s, _, _ in SETTINGS) + "   "
                  + " / ".join(_pauses(full[s]) for s, _, _ in SETTINGS)
                  + f"   writer process {min(child_cpu):.2f}")
            if args.overlap:
                during, outside = split_by_flush(spans)
                flushes.clear()
                print(f"{'':44} tokens+audit during a flush: {len(during)} requests, p50/p95 "
                      "{:.1f}/{:.1f}; outside: {} requests, p50/p95 {:.1f}/{:.1f}".format(
                          *percentiles(during or [0.0]), len(outside), *percentiles(outside or [0.0])))
        client.close()
    if profiler is not None:
        if args.profile_file:
            profiler.dump_stats(args.profile_file)
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)


if __name__ == "__main__":
    main()
