"""Shared benchmark plumbing: a private mongod, the server in a subprocess (with tokens, as a client really
uses it, or without: ``--no-auth``), timing helpers."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from pymongo import IndexModel

from fhir_server.permissions import Role
from fhir_server.security.client import BackendServicesAuth
from fhir_server.security.registration import load_private_key, register_client
from fhir_server.storage.mongod import free_port, temporary_mongod

BENCH_CLIENT = "bench-admin"


@dataclass(frozen=True)
class Server:
    base: str  # the FHIR base URL
    auth: httpx.Auth | None  # SMART Backend Services tokens of an admin client; None without authentication


def add_auth_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-auth", dest="auth", action="store_false",
                        help="serve with FHIR_AUTH_MODE=none (default: tokens, as a real client does)")
    parser.add_argument("--compare-auth", action="store_true",
                        help="issue #11 item 14, in one run: two servers on the same database, the default "
                             "settings (tokens + audit trail) and FHIR_AUTH_MODE=none with FHIR_AUDIT_ENABLED=false, "
                             "alternating blocks of work between them; prints both and the cost in %%")
    parser.add_argument("--audit", choices=["on", "off"], default="on",
                        help="with --compare-auth, the audit trail of the server with tokens (off: what the tokens "
                             "alone cost)")


@contextmanager
def guarded_and_plain(uri: str, db: str, workers: int | None = None, *,
                      audit: bool = True) -> Iterator[tuple[Server, Server]]:
    """The two servers of ``--compare-auth`` on one database: tokens + audit trail (the defaults; tokens alone
    without ``audit``), and neither."""
    trail = "true" if audit else "false"
    with fhir_server(uri, db, workers, auth=True, extra_env={"FHIR_AUDIT_ENABLED": trail}) as guarded, \
            fhir_server(uri, db, workers, auth=False, extra_env={"FHIR_AUDIT_ENABLED": "false"}) as plain:
        yield guarded, plain


def guarded_label(args: argparse.Namespace) -> str:
    """What the guarded server of ``--compare-auth`` runs with (``--audit``)."""
    return "tokens + audit trail" if args.audit == "on" else "tokens alone"


@dataclass(frozen=True)
class AuthCost:
    """p50/p95 with tokens + audit trail and without, from the same run, and what the first costs over the second
    (in %, positive: slower)."""

    guarded: tuple[float, float]
    plain: tuple[float, float]

    @property
    def cost(self) -> tuple[float, float]:
        return tuple(percent_over(g, p) for g, p in zip(self.guarded, self.plain, strict=True))  # type: ignore[return-value]

    @classmethod
    def of(cls, guarded_ms: list[float], plain_ms: list[float]) -> AuthCost:
        return cls(percentiles(guarded_ms), percentiles(plain_ms))


def percent_over(value: float, reference: float) -> float:
    """How much ``value`` exceeds ``reference``, in % (a time: more is a cost; a rate: pass them swapped)."""
    return (value / reference - 1) * 100


@contextmanager
def mongod() -> Iterator[str]:
    """FHIR_MONGODB_URI if set, else a throw-away single-node replica set."""
    given = os.environ.get("FHIR_MONGODB_URI")
    if given:
        yield given
        return
    with temporary_mongod(cache_gb=2.0, prefix="ifp-bench-") as uri:
        yield uri


@contextmanager
def fhir_server(uri: str, db: str, workers: int | None = None, *, auth: bool = True,
                extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """`fhir-server serve` in a subprocess against ``uri``. With ``auth``, in ``smart`` mode with a clients file
    of its own holding an admin client, whose tokens (the backend-services flow) the yielded ``auth`` gets."""
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port),
               *(["--workers", str(workers)] if workers is not None else [])]  # None: the server's default
    with tempfile.TemporaryDirectory(prefix="ifp-bench-auth-") as folder:
        env = {"FHIR_MONGODB_URI": uri, "FHIR_MONGODB_DB": db, "FHIR_AUTH_MODE": "smart" if auth else "none",
               **(extra_env or {})}
        key = None
        if auth:
            clients = Path(folder) / "clients.json"
            key = load_private_key(register_client(clients, BENCH_CLIENT, Role.ADMIN))
            env["FHIR_CLIENTS_FILE"] = str(clients)
        with served(command, env, port) as base:
            yield Server(base, BackendServicesAuth(base, BENCH_CLIENT, key) if key is not None else None)


@contextmanager
def served(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Run a server command until its /fhir/metadata answers; yields the base URL, stops it afterwards."""
    with served_process(command, env, port) as (base, _proc):
        yield base


@contextmanager
def served_process(command: list[str], env: dict[str, str], port: int,
                   log: IO[bytes] | None = None, start_seconds: float = 60) -> Iterator[tuple[str, subprocess.Popen]]:
    """``served``, also yielding the server's process (to watch its memory, bench/soak.py). The server's stderr
    (one JSON log line per request) goes to ``log`` or to a temporary file, never to a pipe: a pipe nobody reads
    fills after a few hundred requests and stalls the server (seen: benchmark clients timing out)."""
    with tempfile.TemporaryFile() if log is None else contextlib.nullcontext(log) as stderr:
        proc = subprocess.Popen(command, env={**os.environ, "FHIR_MAX_COUNT": "1000", **env},
                                stdout=subprocess.DEVNULL, stderr=stderr)
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            if not serving(proc, base, timeout=start_seconds):
                stderr.seek(0)
                raise RuntimeError(f"server did not start: {stderr.read().decode(errors='replace')[-4000:]}")
            yield base, proc
        finally:
            proc.terminate()
            proc.wait(30)


def serving(proc: subprocess.Popen[bytes], base: str, *, timeout: float) -> bool:
    """Wait until the server ``proc`` answers ``base``/metadata (True), exits or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/metadata", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return p50, p95


async def copy_indexes(source: Any, target: Any, collections: set[str]) -> None:
    """Create on ``target`` the indexes ``source`` (the server's database) has on ``collections``: the raw side
    then maintains the same search, history and center indexes as the server's writes do."""
    for name in collections:
        models = []
        async for spec in await source[name].list_indexes():
            options = {k: v for k, v in spec.items() if k not in ("v", "key", "ns")}
            if options.get("name") != "_id_":
                models.append(IndexModel(list(spec["key"].items()), **options))
        if models:
            await target[name].create_indexes(models)
