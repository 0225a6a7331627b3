"""MongoDB deployments the suite breaks: a single node (``fhir_server.storage.mongod.LocalMongod``, as ``make run``
starts it) and a loopback three-node replica set whose primary is stepped down and killed."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from fhir_server.storage.mongod import REPLICA_SET, LocalMongod, free_port, temporary_node


class ReplicaMember(LocalMongod):
    """One member of a :class:`LocalReplicaSet`: started and ready to answer, not initiated on its own."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient[dict[str, Any]]
        with MongoClient(f"mongodb://127.0.0.1:{self.port}/?directConnection=true",
                         serverSelectionTimeoutMS=500) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"mongod exited with {self.process.returncode}; see {self.data_dir}")
                with contextlib.suppress(PyMongoError):
                    client.admin.command("ping")
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError("mongod did not answer in time")
                time.sleep(0.2)


class LocalReplicaSet:
    """Three mongod processes on loopback, one replica set (majority writes need two of them)."""

    def __init__(self, data_dir: Path, size: int = 3, *, cache_gb: float = 0.25) -> None:
        self.members = [ReplicaMember(data_dir / f"node{i}", free_port(), cache_gb=cache_gb) for i in range(size)]

    @property
    def uri(self) -> str:
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={REPLICA_SET}"

    def start(self, timeout: float = 120.0) -> None:
        for member in self.members:
            member.start()
        config = {"_id": REPLICA_SET, "members": [
            {"_id": i, "host": f"127.0.0.1:{m.port}"} for i, m in enumerate(self.members)]}
        with self._direct(self.members[0]) as client:
            client.admin.command("replSetInitiate", config)
        self.wait_for_primary(timeout)

    def wait_for_primary(self, timeout: float = 120.0) -> LocalMongod:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.primary()
            if found is not None:
                return found
            time.sleep(0.3)
        raise RuntimeError("the replica set elected no primary in time")

    def primary(self) -> LocalMongod | None:
        for member in self.members:
            if member.process is None or member.process.poll() is not None:
                continue
            with contextlib.suppress(PyMongoError), self._direct(member) as client:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return member
        return None

    def step_down(self) -> LocalMongod:
        """Ask the primary to step down (an election follows; it may not be re-elected for 30 s)."""
        primary = self.wait_for_primary()
        with contextlib.suppress(PyMongoError), self._direct(primary) as client:
            client.admin.command("replSetStepDown", 30, secondaryCatchUpPeriodSecs=10)
        return primary

    def stop(self) -> None:
        for member in self.members:
            member.resume()
            member.stop()

    @staticmethod
    def _direct(member: LocalMongod) -> MongoClient:
        return MongoClient(f"mongodb://127.0.0.1:{member.port}/?directConnection=true",
                           serverSelectionTimeoutMS=2000)


def single_node() -> contextlib.AbstractContextManager[LocalMongod]:
    return temporary_node(cache_gb=0.25, prefix="ifp-reliability-")


@contextlib.contextmanager
def replica_set() -> Iterator[LocalReplicaSet]:
    data_dir = Path(tempfile.mkdtemp(prefix="ifp-reliability-rs-"))
    cluster = LocalReplicaSet(data_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
