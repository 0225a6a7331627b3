"""Soak (issue #12, item 7): N minutes of mixed load against a server of its own, minute by minute.

The load, all at once, for ``--minutes`` (default 10):

* EHR clients (``--ehr``) submit registry patients as transaction Bundles (``tests.synthetic.registry_bundle``,
  every entry a conditional create) the way an EHR does: a failed attempt (transport error, 5xx) is retried
  with backoff, honouring ``Retry-After``; and some Bundles (``--duplicates``, 15 %) are sent a second time, as
  after a lost response, which must create nothing (every entry ``200 OK``);
* searchers (``--searchers``) run the registry's searches on the patients already submitted (identifier,
  chains, ``_include``, ``_has``, ``_sort``, ``$everything``);
* exporters (``--exporters``) run Bulk Data exports of the last minute's data: ``$export`` kick-off, polling
  the status URL, downloading every NDJSON file of the manifest, then DELETE.

Every minute it prints the requests and errors per kind, the p95 latency per kind (an export counts as one
request, from kick-off to its DELETE), and the resident memory (VmRSS) of the server's processes (uvicorn's
parent and workers, summed) and of mongod. At the end a summary; the exit status is 1 if anything failed (an error
answer, an exception, a duplicate that created something, an ERROR line in the server's log).

    .venv/bin/python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod, percentiles, served_process
from fhir_server import fhirjson
from fhir_server.settings import Settings
from fhir_server.storage.mongod import free_port
from tests.synthetic import registry_bundle

KINDS = ("transaction", "search", "export")
PATIENT_SYSTEM = "https://cml-registry.eu/fhir/sid/patient"
FHIR_JSON = "application/fhir+json"
ATTEMPTS = 4  # an EHR's tries per Bundle


@dataclass
class Window:
    """What happened in one minute (or the whole run)."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    duplicates: int = 0

    def p95(self, kind: str) -> str:
        samples = self.latencies_ms[kind]
        return f"{percentiles(samples)[1]:.0f}" if samples else "-"


@dataclass
class Stats:
    window: Window = field(default_factory=Window)
    total: Window = field(default_factory=Window)
    first_errors: list[str] = field(default_factory=list)

    def record(self, kind: str, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        for window in (self.window, self.total):
            window.latencies_ms[kind].append(elapsed)
            window.requests[kind] += 1

    def error(self, kind: str, detail: str) -> None:
        for window in (self.window, self.total):
            window.errors[kind] += 1
            window.requests[kind] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{kind}: {detail[:300]}")

    def count(self, what: str) -> None:
        for window in (self.window, self.total):
            setattr(window, what, getattr(window, what) + 1)

    def roll(self) -> Window:
        done, self.window = self.window, Window()
        return done


@dataclass
class Known:
    """Patients submitted so far (pseudonym, server id): what the searchers look for."""

    patients: list[tuple[str, str]] = field(default_factory=list)

    def pick(self, rng: random.Random) -> tuple[str, str] | None:
        return rng.choice(self.patients) if self.patients else None


# -- EHR clients ---------------------------------------------------------------------------------------------


async def ehr(client: httpx.AsyncClient, base: str, stats: Stats, known: Known, next_index: Any,
              duplicates: float, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        index = next(next_index)
        bundle, facts = registry_bundle(index, random.Random(seed * 1_000_003 + index))
        payload = fhirjson.dumps(bundle)
        answer = await submit(client, base, payload, stats)
        if answer is None:
            continue
        patient_id = answer["entry"][1]["response"]["location"].split("/Patient/", 1)[1].split("/", 1)[0]
        known.patients.append((facts.pseudonym, patient_id))
        if rng.random() < duplicates:  # the response was lost: the EHR sends the Bundle again
            stats.count("duplicates")
            again = await submit(client, base, payload, stats)
            created = [e["response"]["status"] for e in (again or {}).get("entry", [])
                       if not e["response"]["status"].startswith("200")]
            if again is not None and created:
                stats.error("transaction", f"a resubmitted Bundle created or changed something: {created}")


async def submit(client: httpx.AsyncClient, base: str, payload: bytes, stats: Stats) -> dict[str, Any] | None:
    """POST a transaction Bundle with an EHR's retries; its answer, or None when every attempt failed."""
    for attempt in range(ATTEMPTS):
        if attempt:
            stats.count("retries")
        started = time.perf_counter()
        wait = 0.5 * 2**attempt
        try:
            response = await client.post(base, content=payload, headers={"Content-Type": FHIR_JSON})
        except httpx.HTTPError as exc:
            stats.error("transaction", f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code == 200:
                stats.record("transaction", started)
                return fhirjson.loads(response.content)
            stats.error("transaction", f"{response.status_code} {response.text}")
            if response.status_code < 500:
                return None  # the Bundle is wrong: retrying cannot help
            wait = float(response.headers.get("Retry-After", wait))
        await asyncio.sleep(wait)
    return None


# -- searchers -----------------------------------------------------------------------------------------------


def searches(pseudonym: str, patient_id: str) -> list[str]:
    identifier = quote(f"{PATIENT_SYSTEM}|{pseudonym}", safe="")
    return [
        f"Patient?identifier={identifier}",
        f"Observation?subject:Patient.identifier={identifier}",
        f"Observation?subject=Patient/{patient_id}&_sort=-date&_count=50",
        f"Condition?subject=Patient/{patient_id}&_include=Condition:subject",
        f"MedicationStatement?subject=Patient/{patient_id}",
        f"Patient/{patient_id}/$everything",
        "Observation?code=http://loinc.org|777-3&_count=100",
        "Observation?date=ge2015-01-01&_sort=-date&_count=20",
        "Patient?_has:Observation:subject:code=http://loinc.org|777-3&_count=20",
        "Patient?gender=female&_count=50&_total=accurate",
    ]


async def searcher(client: httpx.AsyncClient, base: str, stats: Stats, known: Known, seed: int,
                   deadline: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        patient = known.pick(rng)
        if patient is None:
            await asyncio.sleep(0.2)
            continue
        url = f"{base}/{rng.choice(searches(*patient))}"
        started = time.perf_counter()
        try:
            response = await client.get(url, headers={"Accept": FHIR_JSON})
        except httpx.HTTPError as exc:
            stats.error("search", f"{url}: {type(exc).__name__}: {exc}")
            continue
        if response.status_code == 200:
            stats.record("search", started)
        else:
            stats.error("search", f"{url}: {response.status_code} {response.text}")


# -- exporters -----------------------------------------------------------------------------------------------


async def exporter(client: httpx.AsyncClient, base: str, stats: Stats, deadline: float) -> None:
    while time.monotonic() < deadline:
        since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
        url = f"{base}/$export?_type=Patient,Condition,Observation&_since={quote(since)}"
        started = time.perf_counter()
        try:
            await export_once(client, url)
        except (httpx.HTTPError, ExportFailed) as exc:
            stats.error("export", f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1)
            continue
        stats.record("export", started)


class ExportFailed(Exception):
    pass


async def export_once(client: httpx.AsyncClient, url: str) -> None:
    """Kick-off, poll, download every file, DELETE (one export: one request in the counts)."""
    headers = {"Accept": FHIR_JSON, "Prefer": "respond-async"}
    kick = await client.get(url, headers=headers)
    if kick.status_code != 202:
        raise ExportFailed(f"kick-off {kick.status_code} {kick.text[:300]}")
    status_url = kick.headers["Content-Location"]
    while True:
        status = await client.get(status_url, headers={"Accept": FHIR_JSON})
        if status.status_code == 200:
            break
        if status.status_code != 202:
            raise ExportFailed(f"status {status.status_code} {status.text[:300]}")
        await asyncio.sleep(min(float(status.headers.get("Retry-After", 1)), 1.0))
    for output in fhirjson.loads(status.content)["output"]:
        async with client.stream("GET", output["url"], headers={"Accept": "application/fhir+ndjson"}) as file:
            if file.status_code != 200:
                raise ExportFailed(f"file {file.status_code} {output['url']}")
            async for _chunk in file.aiter_bytes():
                pass
    deleted = await client.delete(status_url)
    if deleted.status_code not in (200, 202, 204):
        raise ExportFailed(f"DELETE {deleted.status_code} {deleted.text[:300]}")


# -- memory --------------------------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    out[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def tree_rss_mb(root: int) -> tuple[float, int]:
    """Summed RSS of ``root`` and its descendants (uvicorn's parent and its workers), and how many they are."""
    parents = _parents()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier += children
    return sum(_rss_kb(pid) for pid in tree) / 1024, len(tree)


def mongod_rss_mb(uri: str) -> float | None:
    """RSS of the mongod listening on the URI's port (None when it is not on this machine)."""
    port = urlparse(uri.split(",")[0]).port
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"mongod") and str(port).encode() in args:
            return _rss_kb(int(entry)) / 1024
    return None


# -- the run -------------------------------------------------------------------------------------------------

HEADER = (f"{'min':>3} {'txn':>6} {'search':>6} {'export':>6} {'errors':>6} {'retries':>7} {'dup':>4} "
          f"{'txn p95':>8} {'search p95':>10} {'export p95':>10} {'server MB':>9} {'mongod MB':>9}")


def row(label: str, window: Window, server_mb: float, mongod_mb: float | None) -> str:
    return (f"{label:>3} {window.requests['transaction']:>6} {window.requests['search']:>6} "
            f"{window.requests['export']:>6} {sum(window.errors.values()):>6} {window.retries:>7} "
            f"{window.duplicates:>4} {window.p95('transaction'):>6}ms {window.p95('search'):>8}ms "
            f"{window.p95('export'):>8}ms {server_mb:>9.0f} {mongod_mb or 0:>9.0f}")


async def run(base: str, server_pid: int, uri: str, args: argparse.Namespace) -> Stats:
    stats, known = Stats(), Known()
    deadline = time.monotonic() + args.minutes * 60
    next_index = itertools.count(1)
    clients = args.ehr + args.searchers + args.exporters
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(ehr(client, base, stats, known, next_index, args.duplicates, args.seed + i,
                                         deadline)) for i in range(args.ehr)]
        tasks += [asyncio.create_task(searcher(client, base, stats, known, args.seed + 100 + i, deadline))
                  for i in range(args.searchers)]
        tasks += [asyncio.create_task(exporter(client, base, stats, deadline)) for _ in range(args.exporters)]
        print(HEADER, flush=True)
        memory: list[tuple[float, float | None]] = []
        for minute in range(1, args.minutes + 1):
            await asyncio.sleep(max(0.0, deadline - (args.minutes - minute) * 60 - time.monotonic()))
            server_mb, _ = tree_rss_mb(server_pid)
            memory.append((server_mb, mongod_rss_mb(uri)))
            print(row(str(minute), stats.roll(), *memory[-1]), flush=True)
        await asyncio.gather(*tasks)
    summary(stats, memory, len(known.patients))
    return stats


def summary(stats: Stats, memory: list[tuple[float, float | None]], patients: int) -> None:
    total = stats.total
    print(f"\nsummary: {patients} patients submitted, {total.duplicates} resubmitted, {total.retries} retries")
    for kind in KINDS:
        samples = total.latencies_ms[kind]
        p50, p95 = percentiles(samples) if samples else (0.0, 0.0)
        print(f"  {kind:<11} {total.requests[kind]:>7} requests  {total.errors[kind]:>4} errors  "
              f"p50 {p50:.0f} ms  p95 {p95:.0f} ms")
    servers = [m[0] for m in memory]
    mongods = [m[1] or 0 for m in memory]
    print(f"  server RSS  first minute {servers[0]:.0f} MB, last {servers[-1]:.0f} MB, max {max(servers):.0f} MB")
    print(f"  mongod RSS  first minute {mongods[0]:.0f} MB, last {mongods[-1]:.0f} MB, max {max(mongods):.0f} MB")
    for line in stats.first_errors:
        print(f"  error: {line}")


def server_errors(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if "ERROR" in line or "Traceback" in line or "Error:" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--ehr", type=int, default=4, help="concurrent EHR clients submitting Bundles")
    parser.add_argument("--searchers", type=int, default=2, help="concurrent search clients")
    parser.add_argument("--exporters", type=int, default=1, help="concurrent bulk export clients")
    parser.add_argument("--duplicates", type=float, default=0.15, help="share of Bundles sent twice")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the server")
    parser.add_argument("--seed", type=int, default=2008)
    args = parser.parse_args()
    print(f"soak: {args.minutes} min, {args.ehr} EHR clients, {args.searchers} searchers, {args.exporters} "
          f"exporters, {args.workers} server workers, {os.cpu_count()} cores (load generator, server and mongod "
          "share them)", flush=True)
    with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-soak-") as scratch:
        env = {"FHIR_MONGODB_URI": uri, "FHIR_MONGODB_DB": f"bench_soak_{uuid.uuid4().hex[:6]}",
               "FHIR_EXPORT_DIR": str(Path(scratch) / "export")}
        if "auth_mode" in Settings.model_fields:  # token authentication, when it exists, is not what is measured
            env["FHIR_AUTH_MODE"] = "none"
        port = free_port()
        command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--workers",
                   str(args.workers)]
        log = Path(scratch) / "server.log"
        try:
            with open(log, "wb") as log_file, served_process(command, env, port, log_file, 600) as (base, proc):
                stats = asyncio.run(run(base, proc.pid, uri, args))
        except RuntimeError:
            print(log.read_text(errors="replace")[-3000:])
            raise
        finally:
            logged = server_errors(log)
            for line in logged[:10]:
                print(f"  server log: {line[:300]}")
    failed = sum(stats.total.errors.values()) + len(logged)
    print(f"errors: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
