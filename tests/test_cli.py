"""The `fhir-server` command: serve with a given MongoDB, or with a mongod of its own stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fhir_server.settings import Settings
from fhir_server.storage.mongod import free_port


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_metadata(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not answer")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out.decode()


def test_settings_come_from_fhir_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_MONGODB_DB", "registry")
    monkeypatch.setenv("FHIR_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("FHIR_BASE_URL", "https://registry.example/fhir")
    settings = Settings()
    assert (settings.mongodb_db, settings.max_body_bytes, settings.base_url) == (
        "registry", 1234, "https://registry.example/fhir")


def test_serve_with_mongodb_uri_starts_no_mongod(mongo_uri: str, tmp_path: Path) -> None:
    port = free_port()
    proc = _serve({"FHIR_MONGODB_URI": mongo_uri, "FHIR_MONGODB_DB": "cli_given", "FHIR_DATA_DIR": str(tmp_path),
                   "FHIR_BASE_URL": "https://registry.example/fhir"}, port)
    try:
        statement = _wait_for_metadata(port, proc)
        assert statement["implementation"]["url"] == "https://registry.example/fhir"
    finally:
        output = _stop(proc)
    assert "Starting MongoDB" not in output
    assert not (tmp_path / "db").exists()


def test_serve_without_uri_starts_a_replica_set_and_stops_it(tmp_path: Path) -> None:
    port, mongod_port = free_port(), free_port()
    env = {"FHIR_DATA_DIR": str(tmp_path / "data"), "FHIR_MONGOD_PORT": str(mongod_port), "FHIR_MONGODB_URI": "",
           "FHIR_AUTH_MODE": "none"}  # (tokens: tests/security/test_commands.py)
    proc = _serve(env, port)
    try:
        _wait_for_metadata(port, proc)
        created = httpx.post(f"http://127.0.0.1:{port}/fhir/Organization",
                             json={"resourceType": "Organization", "name": "CHU"},
                             headers={"Content-Type": "application/fhir+json"}, timeout=10)
        assert created.status_code == 201  # transactions work: it is a replica set
    finally:
        output = _stop(proc)
    assert "Stopping MongoDB" in output
    assert (tmp_path / "data" / "db").is_dir()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{mongod_port}", timeout=1)


def test_serve_without_the_rule_table_refuses_to_start(mongo_uri: str, tmp_path: Path) -> None:
    """A registry server that cannot find profiles/rules.json (FHIR_PROFILES_DIR, default ./profiles) would
    accept anything: it stops with a message instead of serving."""
    proc = _serve({"FHIR_MONGODB_URI": mongo_uri, "FHIR_PROFILES_DIR": str(tmp_path)}, free_port())
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode != 0
    assert f"No rule table at {tmp_path}/rules.json" in out.decode()
