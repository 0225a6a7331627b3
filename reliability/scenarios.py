"""The faults, one scenario each: a storm of identical conditional writes; SIGKILL of the server mid-ingest;
SIGKILL of mongod mid-ingest; step-down, then SIGKILL, of the primary of a three-node replica set mid-ingest.
Every ingest is followed by the read-back of ``workload``; a scenario passes when every Bundle is complete, nothing
is duplicated, every reference names the right resource, no answer was a 500 or took longer than a client waits."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from fhir_server import fhirjson
from reliability import cluster
from reliability.server import ServerProcess
from reliability.workload import FHIR_JSON, REQUEST_TIMEOUT, Client, ReadBack, Tally, bundles, read_back, when

# A replay after a server crash waits for MongoDB to abort the dead process's transactions: within the server's
# time budget (FHIR_TRANSACTION_TIMEOUT_SECONDS) once the server is back.
REPLAY_BUDGET = 30.0


@dataclass(frozen=True)
class Size:
    bundles: int
    clients: int
    storm_clients: int
    storm_rounds: int


FULL = Size(bundles=200, clients=8, storm_clients=32, storm_rounds=20)
SHORT = Size(bundles=30, clients=4, storm_clients=8, storm_rounds=3)


@dataclass
class Outcome:
    name: str
    bundles: int = 0
    tally: Tally = field(default_factory=Tally)
    read: ReadBack = field(default_factory=ReadBack)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def judge(self) -> None:
        if not self.read.sound:
            self.failures += self.read.problems[:20]
        if self.tally.server_errors:
            self.failures.append(f"{self.tally.server_errors} answers were a 5xx other than 503")
        if self.tally.hung:
            self.failures.append(f"{self.tally.hung} requests got no answer within {REQUEST_TIMEOUT:.0f} s")
        if self.tally.rejected:
            self.failures.append(f"Bundles refused or given up: {Counter(self.tally.rejected)}")

    @property
    def passed(self) -> bool:
        return not self.failures


def _database() -> str:
    return f"reliability_{uuid.uuid4().hex[:8]}"


async def _in_thread(action: Callable[[], Any]) -> None:
    """A blocking step (killing, restarting) while the clients keep going on the event loop."""
    await asyncio.to_thread(action)


async def _ingest(outcome: Outcome, client: Client, size: Size, seed: int, faults: list[Awaitable[None]]) -> None:
    """``size.bundles`` Bundles through ``client`` while ``faults`` strike, then the read-back."""
    items = bundles(size.bundles, seed)
    await asyncio.gather(client.submit_all(items), *faults)
    outcome.bundles, outcome.tally = len(items), client.tally
    outcome.read = await read_back(client.base, items)


async def server_kill(size: Size, log_dir: Path) -> Outcome:
    """SIGKILL of the whole server (two workers) a third into the ingest, then a restart; the clients retry."""
    outcome = Outcome("SIGKILL of the server mid-ingest")
    with cluster.single_node() as node:
        server = ServerProcess(node.uri, _database(), log_dir, workers=2)
        server.start()
        restarted_at: list[float] = []

        async def crash() -> None:
            await _in_thread(server.kill)
            await _in_thread(server.start)
            restarted_at.append(time.monotonic())

        client = Client(server.base, clients=size.clients)
        try:
            await _ingest(outcome, client, size, 11, [when(lambda: client.tally.accepted >= size.bundles // 3, crash)])
            _judge_replays(outcome, restarted_at[0])
        finally:
            server.stop()
    outcome.judge()
    return outcome


def _judge_replays(outcome: Outcome, restarted: float) -> None:
    """The Bundles in flight when the server died: once it is back, each replay succeeds within the budget."""
    waits = [accepted - restarted for failed, accepted in outcome.tally.retried if failed < restarted]
    if not waits:
        outcome.failures.append("no Bundle was in flight when the server was killed")
        return
    outcome.notes.append(f"{len(waits)} Bundles in flight at the kill; their replays succeeded at most "
                         f"{max(waits):.1f} s after the restart (budget {REPLAY_BUDGET:.0f} s)")
    if max(waits) > REPLAY_BUDGET:
        outcome.failures.append(f"a replay after the crash took {max(waits):.1f} s")


async def mongod_kill(size: Size, log_dir: Path) -> Outcome:
    """SIGKILL of mongod a third into the ingest, restarted a second later (journal recovery)."""
    outcome = Outcome("SIGKILL of mongod mid-ingest")
    with cluster.single_node() as node:
        server = ServerProcess(node.uri, _database(), log_dir)
        server.start()

        async def crash() -> None:
            down = time.monotonic()
            await _in_thread(node.kill)
            await asyncio.sleep(1)
            await _in_thread(node.start)
            outcome.notes.append(f"mongod killed after {client.tally.accepted} Bundles, back after "
                                 f"{time.monotonic() - down:.1f} s")

        client = Client(server.base, clients=size.clients)
        try:
            await _ingest(outcome, client, size, 12, [when(lambda: client.tally.accepted >= size.bundles // 3, crash)])
        finally:
            server.stop()
    outcome.judge()
    return outcome


async def replica_set_failover(size: Size, log_dir: Path) -> Outcome:
    """A three-node replica set: the primary steps down a quarter into the ingest; the next primary is killed
    (SIGKILL) at half. Two members remain: a majority, so writes go on after the election."""
    outcome = Outcome("step-down, then SIGKILL, of the replica set's primary")
    with cluster.replica_set() as replica:
        server = ServerProcess(replica.uri, _database(), log_dir)
        server.start()

        async def step_down() -> None:
            old = await asyncio.to_thread(replica.step_down)
            outcome.notes.append(f"primary :{old.port} stepped down after {client.tally.accepted} Bundles")

        async def kill_primary() -> None:
            primary = await asyncio.to_thread(replica.wait_for_primary)
            await _in_thread(primary.kill)
            outcome.notes.append(f"primary :{primary.port} killed after {client.tally.accepted} Bundles")

        client = Client(server.base, clients=size.clients)
        try:
            await _ingest(outcome, client, size, 13, [
                when(lambda: client.tally.accepted >= size.bundles // 4, step_down),
                when(lambda: client.tally.accepted >= size.bundles // 2, kill_primary)])
        finally:
            server.stop()
    outcome.judge()
    return outcome


async def storm(size: Size, log_dir: Path) -> Outcome:
    """Identical conditional creates, conditional updates and transaction Bundles from many clients at once,
    round after round, against two server workers: exactly one resource per criteria, versions in order."""
    outcome = Outcome(f"storm: {size.storm_clients} clients x {size.storm_rounds} rounds of identical writes")
    with cluster.single_node() as node:
        server = ServerProcess(node.uri, _database(), log_dir, workers=2)
        server.env["FHIR_REGISTRY_RULES"] = "false"
        server.start()
        try:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT,
                                         limits=httpx.Limits(max_connections=size.storm_clients)) as http:
                for _ in range(size.storm_rounds):
                    await _create_storm(http, server.base, size.storm_clients, outcome)
                    await _update_storm(http, server.base, size.storm_clients, outcome)
                items = bundles(size.storm_rounds, 14)
                for item in items:  # the same Bundle from every client at once
                    for tally in await asyncio.gather(*[Client(server.base, clients=1).submit_all([item])
                                                        for _ in range(size.storm_clients)]):
                        outcome.tally.add(tally)
                outcome.bundles = len(items)
                outcome.read = await read_back(server.base, items)
        finally:
            server.stop()
    outcome.judge()
    return outcome


async def _create_storm(http: httpx.AsyncClient, base: str, clients: int, outcome: Outcome) -> None:
    pseudonym = f"urn:storm|{uuid.uuid4().hex}"
    payload = fhirjson.dumps({"resourceType": "Patient", "identifier": [
        {"system": "urn:storm", "value": pseudonym.split("|")[1]}], "gender": "female"})
    def create() -> Awaitable[httpx.Response]:
        return http.post(f"{base}/Patient", content=payload,
                         headers={"Content-Type": FHIR_JSON, "If-None-Exist": f"identifier={pseudonym}"})

    statuses = Counter(await asyncio.gather(*[_final(outcome, create) for _ in range(clients)]))
    if statuses != Counter({201: 1, 200: clients - 1}):
        outcome.failures.append(f"conditional create storm answered {dict(statuses)}")
    await _exactly_one(http, base, pseudonym, outcome)


async def _update_storm(http: httpx.AsyncClient, base: str, clients: int, outcome: Outcome) -> None:
    pseudonym = f"urn:storm|{uuid.uuid4().hex}"

    def body(n: int) -> bytes:
        return fhirjson.dumps({"resourceType": "Patient", "identifier": [
            {"system": "urn:storm", "value": pseudonym.split("|")[1]}], "birthDate": f"{1900 + n}-01-01"})

    def update(n: int) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.put(f"{base}/Patient?identifier={pseudonym}", content=body(n),
                                headers={"Content-Type": FHIR_JSON})

    statuses = Counter(await asyncio.gather(*[_final(outcome, update(n)) for n in range(clients)]))
    if statuses != Counter({201: 1, 200: clients - 1}):
        outcome.failures.append(f"conditional update storm answered {dict(statuses)}")
    found = await _exactly_one(http, base, pseudonym, outcome)
    if found is None:
        return
    history = fhirjson.loads((await http.get(f"{base}/Patient/{found}/_history",
                                             params={"_count": str(clients + 1)})).content)
    metas = [e["resource"]["meta"] for e in history.get("entry", [])]
    versions = [int(m["versionId"]) for m in metas]
    if versions != list(range(clients, 0, -1)):
        outcome.failures.append(f"conditional update storm: history lists versions {versions}")
    stamps = [datetime.fromisoformat(m["lastUpdated"]) for m in metas]
    if not all(newer > older for newer, older in itertools.pairwise(stamps)):
        outcome.failures.append("conditional update storm: a version's lastUpdated is not after its predecessor's")


async def _final(outcome: Outcome, send: Callable[[], Awaitable[httpx.Response]]) -> int:
    """The status of the request ``send`` makes, repeated after a 503 as a client would (``Retry-After``); every
    answer is tallied."""
    while True:
        r = await send()
        outcome.tally.answers[str(r.status_code)] += 1
        if r.status_code != 503:
            return r.status_code
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))


async def _exactly_one(http: httpx.AsyncClient, base: str, pseudonym: str, outcome: Outcome) -> str | None:
    found = fhirjson.loads((await http.get(f"{base}/Patient", params={"identifier": pseudonym})).content)
    entries = found.get("entry", [])
    if len(entries) != 1:
        outcome.failures.append(f"{len(entries)} resources for the criteria identifier={pseudonym}")
        return None
    return str(entries[0]["resource"]["id"])


SCENARIOS = {"storm": storm, "server-kill": server_kill, "mongod-kill": mongod_kill,
             "replica-set": replica_set_failover}
