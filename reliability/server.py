"""The FHIR server as a hospital runs it: ``fhir-server serve`` in its own process group (its uvicorn workers
with it), started, killed with SIGKILL like a crash, and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.common import serving
from fhir_server.storage.mongod import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    def __init__(self, uri: str, database: str, log_dir: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.env = {**os.environ, "FHIR_MONGODB_URI": uri, "FHIR_MONGODB_DB": database, "FHIR_AUTH_MODE": "none",
                    "FHIR_PROFILES_DIR": str(ROOT / "profiles"), "FHIR_HOST": "127.0.0.1"}
        self.log_path = log_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float = 120.0) -> None:
        command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(self.port),
                   "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if not serving(self.process, self.base, timeout=timeout):
            raise RuntimeError(f"the server did not start; see {self.log_path}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL of the whole process group: no shutdown, open transactions left behind in MongoDB."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
