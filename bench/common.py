"""Shared benchmark plumbing: a private mongod, the server in a subprocess, timing helpers."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx

from fhir_server.storage.mongod import free_port, temporary_mongod


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
def fhir_server(uri: str, db: str, workers: int = 2) -> Iterator[str]:
    """`fhir-server serve` in a subprocess against ``uri``; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--workers", str(workers)]
    with served(command, {"FHIR_MONGODB_URI": uri, "FHIR_MONGODB_DB": db}, port) as base:
        yield base


@contextmanager
def served(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Run a server command until its /fhir/metadata answers; yields the base URL, stops it afterwards."""
    with served_process(command, env, port) as (base, _proc):
        yield base


@contextmanager
def served_process(command: list[str], env: dict[str, str], port: int,
                   log: IO[bytes] | None = None, start_seconds: float = 60) -> Iterator[tuple[str, subprocess.Popen]]:
    """``served``, also yielding the server's process (to watch its memory, bench/soak.py). A long run passes
    a ``log`` file for the server's stderr: a pipe nobody reads would fill and stall the server."""
    proc = subprocess.Popen(command, env={**os.environ, "FHIR_MAX_COUNT": "1000", **env},
                            stdout=subprocess.DEVNULL, stderr=log or subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(30)


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return p50, p95
