"""A real ``fhir-server serve`` process, as operators run it: graceful shutdown finishes in-flight requests,
logs are JSON lines carrying the request id, /metrics adds up several worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
import pytest

from fhir_server import fhirjson
from fhir_server.bootstrap import start_services
from fhir_server.settings import Settings
from fhir_server.storage.mongod import free_port


def prepared_database(mongo_uri: str) -> str:
    """A database that one server process has already started on (collections, indexes, profiles): several
    workers starting together on a fresh one race to create them (issue #12's defect 3, tested elsewhere)."""
    name = f"serve_{uuid.uuid4().hex[:8]}"

    async def start_once() -> None:
        services = await start_services(Settings(mongodb_uri=mongo_uri, mongodb_db=name, registry_rules=False),
                                        mongo_uri)
        await services.close()

    asyncio.run(start_once())
    return name


@contextmanager
def serving(mongo_uri: str, **env: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    settings = {"FHIR_MONGODB_URI": mongo_uri, "FHIR_MONGODB_DB": f"serve_{uuid.uuid4().hex[:8]}",
                "FHIR_REGISTRY_RULES": "false", "FHIR_AUTH_MODE": "none", **env}  # loopback: no tokens needed
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)],
                            env={**os.environ, **settings}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(port, proc)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _wait_until_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server never became ready")


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_an_in_flight_request_finish_then_stops(mongo_uri: str, workers: str) -> None:
    """One worker stops accepting at once; with several (the default is one per CPU) the supervisor holds the
    listening socket until its workers are done, and each worker finishes its requests in flight."""
    resource = fhirjson.dumps({"resourceType": "Patient", "gender": "female"})
    with serving(mongo_uri, FHIR_SHUTDOWN_TIMEOUT_SECONDS="60", FHIR_WORKERS=workers) as (port, proc):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(b"POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: " + str(len(resource)).encode() + b"\r\n\r\n")
        # 100 Continue: the server has started this request and its handler is reading the body
        assert b" 100 " in _read_until(sock, b"\r\n\r\n").split(b"\r\n")[0]
        proc.send_signal(signal.SIGTERM)
        if workers == "1":
            for _ in range(600):  # the server stops accepting new connections first
                if _refuses_connections(port):
                    break
                time.sleep(0.05)
            assert _refuses_connections(port)
        else:
            time.sleep(1)  # the supervisor has passed the signal on to its workers
        assert proc.poll() is None  # still running: the request is in flight
        sock.sendall(resource)
        response = _read_until(sock, b"}")
        sock.close()
        output, _ = proc.communicate(timeout=90)
    assert response.startswith(b"HTTP/1.1 201 "), response[:200]
    # uvicorn ends by re-raising the signal it handled: the exit status of a SIGTERM, after a clean shutdown
    assert proc.returncode in (0, -signal.SIGTERM), output.decode()[-2000:]
    assert "Application shutdown complete" in output.decode()


def test_logs_are_json_lines_with_the_request_id_and_metrics_add_up_the_workers(mongo_uri: str) -> None:
    with serving(mongo_uri, FHIR_WORKERS="2", FHIR_MONGODB_DB=prepared_database(mongo_uri)) as (port, proc):
        for _ in range(6):
            assert httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", headers={"X-Request-Id": "op-77"},
                             timeout=30).headers["x-request-id"] == "op-77"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
    capabilities = [line for line in metrics.splitlines()
                    if line.startswith('fhir_requests_total{interaction="capabilities",method="GET",status="200"}')]
    assert len(capabilities) == 1 and float(capabilities[0].split()[-1]) == 6.0  # both workers' counts, summed
    records = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "fhir_server.access"]
    assert len(access) == 6 and {r["request_id"] for r in access} == {"op-77"}
    assert all({"time", "level", "message"} <= set(r) for r in records)


def test_every_response_is_dated_once_and_never_before_what_it_reports_modified(mongo_uri: str) -> None:
    """RFC 9110 8.8.2.1: Last-Modified MUST NOT be later than the response's Date. uvicorn's own Date is refreshed
    once a second, so a write answered before its refresh was dated before it was made."""
    with serving(mongo_uri, FHIR_WORKERS="1", FHIR_MONGODB_DB=prepared_database(mongo_uri)) as (port, proc):
        dated = [_dated_write(port, n) for n in range(25)]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=90)
    assert all(len(dates) == 1 for dates, _ in dated), dated
    assert all(modified <= parsedate_to_datetime(dates[0]) for dates, modified in dated), dated


def _dated_write(port: int, n: int) -> tuple[list[str], datetime]:
    """The Date headers and the Last-Modified of a write, a little after the previous one (the writes fall across
    the second boundaries)."""
    time.sleep(0.07)
    resource = {"resourceType": "Patient", "id": "dated", "active": n % 2 == 0}
    response = httpx.put(f"http://127.0.0.1:{port}/fhir/Patient/dated", content=fhirjson.dumps(resource),
                         headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.headers.get_list("date"), parsedate_to_datetime(response.headers["last-modified"])
