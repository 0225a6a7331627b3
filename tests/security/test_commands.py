"""A newcomer's path (issue #11 items 1 and 10) with the real command: the first ``fhir-server serve`` in
``smart`` mode registers ``dev-admin``; ``fhir-server token`` runs the backend-services flow against the running
server; ``fhir-server client add`` registers a client the running server accepts at once; ``FHIR_AUTH_MODE=none``
is refused on an address other than loopback, and warned about on loopback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.security.modes import check_auth_settings
from fhir_server.settings import Settings
from fhir_server.storage.mongod import free_port
from tests.test_cli import _serve, _stop, _wait_for_metadata

FHIR_SERVER = str(Path(sys.executable).parent / "fhir-server")  # the console script (sub-commands of plugins)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FHIR_SERVER, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_first_start_registers_dev_admin_whose_token_works_and_a_client_added_later_too(
        mongo_uri: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"FHIR_MONGODB_URI": mongo_uri, "FHIR_MONGODB_DB": "cli_tokens", "FHIR_DATA_DIR": str(tmp_path),
           "FHIR_AUTH_MODE": "smart"}
    url = f"http://127.0.0.1:{port}/fhir"
    proc = _serve(env, port)
    try:
        _wait_for_metadata(port, proc)
        assert httpx.get(f"{url}/Patient", timeout=10).status_code == 401
        [entry] = json.loads((tmp_path / "clients.json").read_text())["clients"]
        assert (entry["client_id"], entry["role"]) == ("dev-admin", "admin")
        key_file = tmp_path / "keys" / "dev-admin.jwk.json"
        assert oct(key_file.stat().st_mode)[-3:] == "600"

        token = _cli("token", "--url", url, env=env)
        assert token.returncode == 0, token.stderr
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        assert httpx.get(f"{url}/Patient", headers=headers, timeout=10).status_code == 200

        added = _cli("client", "add", "--id", "ehr-fr-poi", "--role", "ehr", "--center", "FR-POI", env=env)
        assert added.returncode == 0, added.stderr
        assert (tmp_path / "keys" / "ehr-fr-poi.jwk.json").is_file()
        ehr = _cli("token", "--client", "ehr-fr-poi", "--scope", "system/*.rs", "--url", url, env=env)
        assert ehr.returncode == 0, ehr.stderr
        headers = {"Authorization": f"Bearer {ehr.stdout.strip()}"}
        assert httpx.get(f"{url}/ValueSet", params={"_count": "1"}, headers=headers, timeout=10).status_code == 200
        assert httpx.post(f"{url}/ValueSet", json={"resourceType": "ValueSet", "status": "draft"},
                          headers=headers, timeout=10).status_code == 403
    finally:
        output = _stop(proc)
    assert "registered the client dev-admin" in output


def test_client_add_refuses_an_ehr_client_without_center(tmp_path: Path) -> None:
    env = {"FHIR_DATA_DIR": str(tmp_path)}
    refused = _cli("client", "add", "--id", "ehr-x", "--role", "ehr", env=env)
    assert refused.returncode == 2 and "needs its center" in refused.stderr
    assert not (tmp_path / "clients.json").exists()


def test_auth_mode_none_is_refused_on_an_address_other_than_loopback(tmp_path: Path) -> None:
    refused = _cli("serve", "--host", "0.0.0.0", "--port", str(free_port()),
                   env={"FHIR_AUTH_MODE": "none", "FHIR_DATA_DIR": str(tmp_path), "FHIR_MONGODB_URI": ""})
    assert refused.returncode == 2
    assert "FHIR_AUTH_MODE=none" in refused.stderr and "not a loopback address" in refused.stderr
    assert not (tmp_path / "db").exists()  # refused before MongoDB starts
    with pytest.raises(RuntimeError, match="loopback"):
        create_app(Settings(auth_mode="none", host="10.1.2.3"))


def test_auth_mode_none_on_loopback_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fhir_server"):
        check_auth_settings(Settings(auth_mode="none", host="127.0.0.1"))
        check_auth_settings(Settings(auth_mode="none"), "::1")
    assert sum("FHIR_AUTH_MODE=none" in r.message for r in caplog.records) == 2


def test_an_issuer_without_its_key_set_is_refused() -> None:
    with pytest.raises(RuntimeError, match="go together"):
        check_auth_settings(Settings(auth_issuer="https://idp.example"))


def test_tokens_are_the_default() -> None:
    assert Settings.model_fields["auth_mode"].default == "smart"
    assert Settings.model_fields["token_lifetime_seconds"].default == 300
