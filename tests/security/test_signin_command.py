"""``fhir-server signin-link [--client ID] [--url URL]`` against a running server (issue #11 item 11): the real
backend-services flow for the client's token, then the server's single-use link, which a browser opens once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from fhir_server.storage.mongod import free_port
from tests.security.signin import HTML, REPORT_TITLE
from tests.test_cli import _serve, _stop, _wait_for_metadata

FHIR_SERVER = str(Path(sys.executable).parent / "fhir-server")


def test_signin_link_prints_a_link_that_signs_in_once_as_the_client(mongo_uri: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"FHIR_MONGODB_URI": mongo_uri, "FHIR_MONGODB_DB": "cli_signin", "FHIR_DATA_DIR": str(tmp_path),
           "FHIR_AUTH_MODE": "smart"}
    proc = _serve(env, port)
    try:
        _wait_for_metadata(port, proc)
        printed = subprocess.run([FHIR_SERVER, "signin-link", "--url", f"http://127.0.0.1:{port}/fhir"],
                                 env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert printed.returncode == 0, printed.stderr
        link = printed.stdout.strip()
        assert link.startswith(f"http://127.0.0.1:{port}/signin?code=")
        with httpx.Client(headers={"Accept": HTML}, timeout=10) as browser:
            assert browser.get(f"http://127.0.0.1:{port}/report").status_code == 401
            opened = browser.get(link)
            assert opened.status_code == 303 and "ifp_session" in browser.cookies
            page = browser.get(f"http://127.0.0.1:{port}/report")
            assert page.status_code == 200 and REPORT_TITLE in page.text
            assert "Signed in as dev-admin (admin)" in page.text
        with httpx.Client(headers={"Accept": HTML}, timeout=10) as another:
            assert another.get(link).status_code == 400  # used up
    finally:
        _stop(proc)
