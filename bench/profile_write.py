"""Where a write's server CPU goes (issue #14, item 2): the registry's transaction Bundles through the real write
path, in-process, under cProfile, split into stages.

The app (``api.app.create_app`` with the default settings: registry rule table enforced, no authentication) is
driven through httpx's ASGI transport -- request parsing, the transaction interaction, validation, index
extraction, the MongoDB transaction against a real mongod (a throw-away single-node replica set, as the tests
and bench/ingest.py start one), the response. The Bundles are bench/ingest.py's (``tests.synthetic``).

Two passes over fresh Bundles. The first runs without the profiler: it gives the true CPU per resource
(``time.process_time`` of this process: the server's side only, mongod runs in its own process) and times the
synchronous stages directly (``TIMED``: a process-time stopwatch around each call, marked "timed"). The second
runs under cProfile and gives the asynchronous stages (whose wall time includes waiting for mongod) as their
cumulative CPU under the profiler, scaled to the CPU the first pass left outside the timed stages (marked
"cProfile"): the profiler slows Python code about fourfold and Rust/C code (pydantic-core, the BSON encoder) not
at all, so unscaled cProfile shares would misstate a C-heavy stage. A stage includes its callees; the stages do
not nest; "other" is the rest (HTTP/ASGI, Bundle entry parsing, reference rewriting, the event loop, the
driver's own work outside the listed calls, the extra write checks such as risk scores).

    .venv/bin/python bench/profile_write.py --patients 200
    .venv/bin/python bench/profile_write.py --patients 150 --cpu-only 2   # CPU and GC per resource, 2 rounds

The heap is settled after start-up as the app's lifespan does it (``api.app.settle_heap``: start-up objects frozen,
the young generation collected every 20,000 allocations), so the CPU is the served process's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import pstats
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod
from fhir_server import fhirjson
from fhir_server.api import app as app_module
from fhir_server.api.app import create_app
from fhir_server.bootstrap import start_services
from fhir_server.settings import Settings
from tests.synthetic import registry_bundle

# Synchronous stages, timed directly: stage -> (module, attribute path) of the functions whose calls are the stage's.
TIMED: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("parse (request JSON)", (("fhir_server.fhirjson", "loads"),)),
    ("structure check: R4 element table (primitives.py)", (("fhir_server.resources", "check_primitive_types"),)),
    ("structure check: fhir.resources model, other", (("fhir_server.resources", "check_structure"),)),
    ("profiles, rule table, bindings, extension contexts", (
        ("fhir_server.validation.profile", "ProfileValidator.validate_all"),
        ("fhir_server.interactions.enforcement", "profiles_to_check"),
    )),
    ("index extraction", (("fhir_server.services", "Services.index_values"),)),
    ("response (serialize)", (("fhir_server.fhirjson", "dumps"),)),
]
NESTED = (TIMED[1][0],)
# Asynchronous stages, from cProfile: stage -> (file suffix, function name) of the outermost calls.
PROFILED: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("reference reads for validation", (("fhir_server/interactions/enforcement.py", "resolver_for"),)),
    ("conditional lookups (ifNoneExist)", (
        ("fhir_server/interactions/search.py", "find_matching_each"),
        ("fhir_server/interactions/search.py", "find_matching_of_types"),
        ("fhir_server/interactions/unit_of_work.py", "matches"),
    )),
    ("storage: staged writes + claims", (("fhir_server/interactions/unit_of_work.py", "flush"),)),
    ("storage: transaction commit", (("pymongo/asynchronous/client_session.py", "commit_transaction"),)),
]
# cProfile names of the timed stages (subtracted from the profiled total before scaling)
TIMED_IN_PROFILE = (("fhir_server/fhirjson.py", "loads"), ("fhir_server/resources.py", "check_structure"),
                    ("fhir_server/validation/profile.py", "validate_all"),
                    ("fhir_server/interactions/enforcement.py", "profiles_to_check"),
                    ("fhir_server/services.py", "index_values"), ("fhir_server/fhirjson.py", "dumps"))


class Stopwatch:
    """Process time spent in calls of the wrapped functions: outermost calls only, so that a recursive call or
    one timed function called by another is not counted twice -- except the R4 table's check, timed inside
    the structure check on purpose (``NESTED``: the report takes it out of the structure check's figure)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._depth = 0
        self._restore: list[tuple[Any, str, Any]] = []

    def wrap(self, stage: str, function: Any) -> Any:
        nested = stage in NESTED

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth and not nested:
                return function(*args, **kwargs)
            self._depth += not nested
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= not nested
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.process_time() - start
        return timed

    def install(self) -> None:
        for stage, functions in TIMED:
            for module_name, attribute in functions:
                owner: Any = importlib.import_module(module_name)
                *classes, name = attribute.split(".")
                for cls in classes:
                    owner = getattr(owner, cls)
                original = getattr(owner, name)
                self._patch(owner, name, original, self.wrap(stage, original), everywhere=not classes)

    def _patch(self, owner: Any, name: str, original: Any, wrapper: Any, *, everywhere: bool) -> None:
        # a module-level function is also bound by name in every module that imported it
        holders = [m for m in list(sys.modules.values()) if getattr(m, name, None) is original] if everywhere \
            else [owner]
        for holder in holders:
            self._restore.append((holder, name, original))
            setattr(holder, name, wrapper)

    def uninstall(self) -> None:
        for holder, name, original in reversed(self._restore):
            setattr(holder, name, original)
        self._restore.clear()


def make_payloads(patients: int, seed: int) -> tuple[list[bytes], int]:
    rng = random.Random(seed)
    bundles = [registry_bundle(i, rng)[0] for i in range(patients)]
    return [fhirjson.dumps(b) for b in bundles], sum(len(b["entry"]) for b in bundles)


async def post_all(http: httpx.AsyncClient, payloads: list[bytes], clients: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)

    async def worker() -> None:
        while not queue.empty():
            r = await http.post("/fhir", content=queue.get_nowait(),
                                headers={"Content-Type": "application/fhir+json"})
            if r.status_code != 200:
                raise RuntimeError(f"transaction failed: {r.status_code} {r.text[:500]}")

    await asyncio.gather(*[worker() for _ in range(clients)])


def cumulative(stats: pstats.Stats, functions: tuple[tuple[str, str], ...]) -> float:
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    return float(sum(row[3] for (file, _line, name), row in table.items()
                     if any(file.endswith(suffix) and name == fn for suffix, fn in functions)))


def settle_heap() -> None:
    """As the app's lifespan does after start-up (``api.app.settle_heap``; a checkout from before it: freeze)."""
    settle = getattr(app_module, "settle_heap", None)
    if settle is not None:
        settle()
    else:
        gc.collect()
        gc.freeze()


class CollectorClock:
    """CPU seconds the cyclic garbage collector took (``gc.callbacks``), per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds[info["generation"]] += time.process_time() - self._start
            self.count[info["generation"]] += 1


async def cpu_rounds(args: argparse.Namespace, http: httpx.AsyncClient) -> None:
    """``--cpu-only``: rounds of fresh Bundles without the profiler, CPU and collector time per resource."""
    for n in range(args.cpu_only):
        payloads, resources = make_payloads(args.patients, args.seed + 10 + n)
        clock = CollectorClock()
        gc.callbacks.append(clock)
        start = time.process_time()
        await post_all(http, payloads, args.clients)
        cpu = time.process_time() - start
        gc.callbacks.remove(clock)
        print(f"round {n + 1}: {resources} resources, {cpu:.2f} s CPU = {1000 * cpu / resources:.3f} ms per resource; "
              f"garbage collector {1000 * sum(clock.seconds) / resources:.3f} ms per resource "
              f"({'/'.join(map(str, clock.count))} collections of generations 0/1/2)", flush=True)


async def run(args: argparse.Namespace, uri: str) -> None:
    settings = Settings(mongodb_uri=uri, mongodb_db=f"bench_profile_{uuid.uuid4().hex[:6]}", auth_mode="none")
    services = await start_services(settings, uri)
    settle_heap()
    try:
        app = create_app(settings, services)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     timeout=300) as http:
            warm, _ = make_payloads(20, args.seed + 1)
            await post_all(http, warm, args.clients)  # caches, validators, indexes: not what a write costs
            if args.cpu_only:
                await cpu_rounds(args, http)
                return
            plain, resources = make_payloads(args.patients, args.seed)
            stopwatch = Stopwatch()
            stopwatch.install()
            start = time.process_time()
            await post_all(http, plain, args.clients)
            cpu = time.process_time() - start
            stopwatch.uninstall()
            profiled, _ = make_payloads(args.patients, args.seed + 2)
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await post_all(http, profiled, args.clients)
            profiler.disable()
    finally:
        await services.close()
        gc.unfreeze()
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    report(args, cpu, resources, stopwatch.seconds, stats)


def report(args: argparse.Namespace, cpu: float, resources: int, timed: dict[str, float],
           stats: pstats.Stats) -> None:
    ms = 1000 / resources
    # the structure check's timed figure includes the R4 table's: show the rest of it
    table_s = timed.get(TIMED[1][0], 0.0)
    timed[TIMED[2][0]] = timed.get(TIMED[2][0], 0.0) - table_s
    profiled_total = stats.total_tt  # type: ignore[attr-defined]
    outside_timed = cpu - sum(timed.values())  # the table's time is now out of the structure check's
    scale = outside_timed / (profiled_total - cumulative(stats, TIMED_IN_PROFILE))
    rows = [(stage, timed.get(stage, 0.0), "timed") for stage, _ in TIMED]
    rows += [(stage, scale * cumulative(stats, functions), "cProfile") for stage, functions in PROFILED]
    rows.append(("other (HTTP/ASGI, entries, references, event loop, driver)",
                 cpu - sum(s for _, s, _ in rows), "rest"))
    print(f"{args.patients} patients, {resources} resources, {args.clients} concurrent clients, in-process, "
          "registry rules enforced, FHIR_AUTH_MODE=none")
    print(f"server CPU (no profiler): {cpu:.2f} s = {cpu * ms:.3f} ms per resource\n")
    print(f"| {'stage':<60} | {'ms CPU/resource':>15} | {'%':>5} | how      |")
    print(f"|{'-' * 62}|{'-' * 16}:|{'-' * 6}:|----------|")
    for stage, seconds, how in rows:
        print(f"| {stage:<60} | {seconds * ms:>15.3f} | {100 * seconds / cpu:>5.1f} | {how:<8} |")
    print(f"| {'total':<60} | {cpu * ms:>15.3f} | {100.0:>5.1f} |          |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--dump", help="also write the cProfile stats to this file (for snakeviz, pstats)")
    parser.add_argument("--cpu-only", type=int, default=0, metavar="ROUNDS",
                        help="no profile: ROUNDS rounds of --patients Bundles, CPU and collector time per resource")
    args = parser.parse_args()
    with mongod() as uri:
        asyncio.run(run(args, uri))


if __name__ == "__main__":
    main()
