"""Start-up cost (issue #13, item 6): how long `fhir-server serve` takes to be ready, the CPU it spent getting
there and its memory, on a fresh database and on an existing one.

Each run starts the server (1 worker, FHIR_AUTH_MODE=none) against a private mongod (``bench.common``) and reads
/proc of the server's process tree (proc(5): ``stat`` utime + stime, ``status`` VmRSS):

* ``ready``: seconds from the process's start until ``/health/ready`` answers 200 (indexes created, profiles
  loaded, MongoDB answering), and the server's CPU seconds and RSS at that moment;
* ``metadata``: the first ``GET /metadata`` after that (the CapabilityStatement of every type), its seconds,
  the CPU seconds in all and the RSS after it;
* ``used``: CPU seconds in all and RSS after a first write (one registry patient's transaction Bundle) and a
  search of each registry type.

A fresh run starts on an empty database; the existing run restarts on the database the fresh run wrote.
``--tree`` runs the server from another checkout's ``fhir_server`` (``PYTHONPATH`` and working directory set to
it), so two versions can be compared by one script, interleaved run by run:

    git worktree add --detach ../before ec5b457^1      # the server as it was with 13 types
    .venv/bin/python bench/startup.py --runs 3 --tree before=../before --tree now=.

Wall-clock seconds swing on a shared machine; the CPU seconds swing far less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod
from bench.cpu import descendants, snapshot
from fhir_server import fhirjson
from fhir_server.resources import REGISTRY_TYPES
from fhir_server.storage.mongod import free_port
from tests.synthetic import registry_bundle

FIELDS = ("ready_s", "ready_cpu_s", "ready_rss_mib", "metadata_s", "metadata_cpu_s", "metadata_rss_mib",
          "used_cpu_s", "used_rss_mib")


@dataclass
class Run:
    label: str
    database: str  # "fresh" or "existing"
    values: dict[str, float]


def tree_cpu_rss(pid: int) -> tuple[float, float]:
    """CPU seconds and resident MiB of ``pid`` and its descendants (uvicorn's parent and worker)."""
    samples = snapshot()
    cpu = rss_kib = 0.0
    for child in descendants(pid, samples):
        if child not in samples:
            continue
        cpu += samples[child].cpu
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        rss_kib += next((float(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return cpu, rss_kib / 1024


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"server did not get ready at {url}")


def first_use(base: str, seed: int) -> None:
    """One registry patient written, each registry type searched once."""
    import random

    bundle, _facts = registry_bundle(seed, random.Random(seed))
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(timeout=120) as client:
        client.post(base, content=fhirjson.dumps(bundle), headers=headers).raise_for_status()
        for resource_type in REGISTRY_TYPES:
            client.get(f"{base}/{resource_type}", params={"_count": "10"}).raise_for_status()


def measure(tree: Path, uri: str, db: str, *, seed: int) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "FHIR_MONGODB_URI": uri, "FHIR_MONGODB_DB": db, "FHIR_AUTH_MODE": "none",
           "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--workers", "1"]
    root = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stderr:
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_ready(proc, f"{root}/health/ready")
            values = {"ready_s": time.monotonic() - started}
            values["ready_cpu_s"], values["ready_rss_mib"] = tree_cpu_rss(proc.pid)
            before = time.monotonic()
            httpx.get(f"{root}/fhir/metadata", timeout=120).raise_for_status()
            values["metadata_s"] = time.monotonic() - before
            values["metadata_cpu_s"], values["metadata_rss_mib"] = tree_cpu_rss(proc.pid)
            first_use(f"{root}/fhir", seed)
            values["used_cpu_s"], values["used_rss_mib"] = tree_cpu_rss(proc.pid)
            return values
        except Exception:
            stderr.seek(0)
            print(stderr.read().decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(30)


def summary(runs: list[Run]) -> None:
    print(f"\n{'version':<10} {'database':<9} " + " ".join(f"{f:>16}" for f in FIELDS))
    for label in dict.fromkeys(r.label for r in runs):
        for database in ("fresh", "existing"):
            chosen = [r.values for r in runs if r.label == label and r.database == database]
            cells = []
            for name in FIELDS:
                found = [v[name] for v in chosen if name in v]
                cells.append(f"{statistics.median(found):7.2f} ({min(found):.1f}-{max(found):.1f})" if found
                             else "-")
            print(f"{label:<10} {database:<9} " + " ".join(f"{c:>16}" for c in cells))
    print("median (min-max) of the runs; seconds, CPU seconds of the server's processes, MiB resident")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout whose fhir_server to serve (repeatable; default: this one)")
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree] or \
        [("this", Path(__file__).resolve().parents[1])]
    runs: list[Run] = []
    with mongod() as uri:
        for run in range(args.runs):
            for label, tree in trees:
                db = f"startup_{label}_{run}"
                for database, seed in (("fresh", run + 1), ("existing", run + 101)):
                    values = measure(tree, uri, db, seed=seed)
                    runs.append(Run(label, database, values))
                    print(label, database, run + 1, {k: round(v, 2) for k, v in values.items()}, flush=True)
    summary(runs)


if __name__ == "__main__":
    main()
