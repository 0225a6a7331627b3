"""What the background audit writer spends on the events of searches (issue #11 item 14), by CPU, without the
noise of serving requests: ``--events`` events of a search page naming ``--patients`` patients each, drawn from
``--pool`` patients (as ``bench/search.py``'s 2,000; a larger pool: fewer recur from one event to the next), and
as many events of a read, naming one patient, are queued in a real ``AuditLog`` and flushed into a throw-away mongod;
prints the writer's CPU per event (``time.process_time``: search-value extraction, BSON encoding, the driver's
insert) and mongod's (``/proc``; the collection has the trail's indexes), the request-time part (building the
event from the page) and each event's stored size. The lowest of
``--rounds`` is kept.

    .venv/bin/python bench/audit_writer.py --events 400 --patients 100 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, IndexModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod
from bench.cpu import snapshot
from fhir_server.context import RequestContext
from fhir_server.interactions.audit import result_entities
from fhir_server.interactions.audit_event import Asked, event, query_entity
from fhir_server.interactions.result import InteractionResult
from fhir_server.permissions import Caller, Role
from fhir_server.search import audit_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage.audit_log import AuditLog
from fhir_server.storage.audit_process import ProcessAuditLog, WriterProcess
from fhir_server.storage.client import connect
from fhir_server.storage.documents import now_ms

BASE = "http://bench/fhir"
CALLER = RequestContext.for_caller(BASE, Caller(id="bench-admin", role=Role.ADMIN), client_address="127.0.0.1")
SEARCH = Asked("GET", "Observation?code=http://loinc.org|777-3", "search-type", "E", "Observation", query=True)


def page(patients: int, pool: list[str]) -> InteractionResult:
    """A searchset of ``patients`` Observations, each of another patient of ``pool``."""
    entries = [{"resource": {"resourceType": "Observation", "id": str(uuid.uuid4()),
                             "subject": {"reference": f"Patient/{patient}"}}}
               for patient in random.sample(pool, patients)]
    return InteractionResult(200, {"resourceType": "Bundle", "type": "searchset", "entry": entries})


def search_event(result: InteractionResult) -> dict[str, Any]:
    """The event ``audit.record`` queues for a search answered by ``result``."""
    return event("ifp-fhir", CALLER, BASE, SEARCH, 200, [query_entity(SEARCH.url), *result_entities(result)],
                 now_ms())


async def writer_cpu(uri: str, resources: list[dict[str, Any]], registry: SearchParameterRegistry) -> float:
    """CPU ms per event of writing ``resources`` through a fresh ``AuditLog`` (its collection dropped after)."""
    client = connect(uri)
    collection = client["bench_audit_writer"][f"e{uuid.uuid4().hex[:8]}"]
    # the trail's indexes, as the store creates them (bootstrap.search_indexes, Store.ensure_indexes)
    await collection.create_indexes([IndexModel([("lastUpdated", DESCENDING), ("_id", ASCENDING)]),
                                     *(IndexModel(list(keys)) for keys in audit_values.INDEX_SPECS)])
    await collection.insert_one({"_id": "warm-up"})
    log = AuditLog(collection, lambda r: audit_values.index_values(registry, r), batch_size=1 << 30,
                   interval=3600)
    for resource in resources:
        log.record({**resource, "id": str(uuid.uuid4())}, now_ms())
    db_started, started = _mongod_cpu(), time.process_time()
    await log.flush()
    cpu = (time.process_time() - started) * 1000 / len(resources)
    mongod_ms.append((_mongod_cpu() - db_started) * 1000 / len(resources))
    await log.close()
    await collection.drop()
    await client.close()
    return cpu


async def process_writer_cpu(uri: str, resources: list[dict[str, Any]]) -> tuple[float, float]:
    """CPU ms per event of the server process and of the writer process, writing ``resources`` through a
    ``ProcessAuditLog`` (the child started and warmed by one event first)."""
    client = connect(uri)
    collection = client["bench_audit_writer"][f"e{uuid.uuid4().hex[:8]}"]
    await collection.create_indexes([IndexModel([("lastUpdated", DESCENDING), ("_id", ASCENDING)]),
                                     *(IndexModel(list(keys)) for keys in audit_values.INDEX_SPECS)])
    here = AuditLog(collection, audit_values.default_index, batch_size=1 << 30, interval=3600)
    child = WriterProcess(uri, collection.database.name, collection.name, audit_values.default_index)
    log = ProcessAuditLog(here, child, lambda resource: True)
    log.record({**resources[0], "id": str(uuid.uuid4())}, now_ms())
    await log.flush()
    for resource in resources:
        log.record({**resource, "id": str(uuid.uuid4())}, now_ms())
    assert child.pid is not None
    child_started, db_started, started = _cpu_of(child.pid), _mongod_cpu(), time.process_time()
    await log.flush()
    cpu = (time.process_time() - started) * 1000 / len(resources)
    child_ms = (_cpu_of(child.pid) - child_started) * 1000 / len(resources)
    mongod_ms.append((_mongod_cpu() - db_started) * 1000 / len(resources))
    await log.close()
    await collection.drop()
    await client.close()
    return cpu, child_ms


def _cpu_of(pid: int) -> float:
    return snapshot()[pid].cpu


mongod_ms: list[float] = []  # mongod's CPU ms per event of each ``writer_cpu``


def _mongod_cpu() -> float:
    """CPU seconds of the mongod this process started (``bench/cpu.py``'s /proc reading)."""
    me = os.getpid()
    return sum(p.cpu for p in snapshot().values() if p.ppid == me and "mongod" in p.cmdline.split(" ", 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--patients", type=int, default=100, help="patients named by a search's event")
    parser.add_argument("--pool", type=int, default=2000, help="patients the pages are drawn from")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--process", action="store_true", help="also through the writer process")
    args = parser.parse_args()
    random.seed(3)
    pool = [str(uuid.uuid4()) for _ in range(max(args.pool, args.patients))]
    registry = SearchParameterRegistry.load_default()
    pages = [page(args.patients, pool) for _ in range(args.events)]
    searches = [search_event(p) for p in pages]
    reads = [search_event(page(1, pool)) for _ in range(args.events)]
    request_ms: list[float] = []
    for _ in range(args.rounds):
        started = time.process_time()
        for p in pages:
            search_event(p)
        request_ms.append((time.process_time() - started) * 1000 / len(pages))
    sizes = {name: len(bson.encode({"resource": r, "sp": audit_values.index_values(registry, r)}))
             for name, r in (("search", searches[0]), ("small", reads[0]))}
    with mongod() as uri:
        cpu: dict[str, list[float]] = {"search": [], "small": []}
        db: dict[str, list[float]] = {"search": [], "small": []}
        split: dict[str, list[tuple[float, float, float]]] = {"search": [], "small": []}  # server, child, mongod
        for _ in range(args.rounds):
            for name, resources in (("search", searches), ("small", reads)):
                cpu[name].append(asyncio.run(writer_cpu(uri, resources, registry)))
                db[name].append(mongod_ms[-1])
                if args.process:
                    split[name].append((*asyncio.run(process_writer_cpu(uri, resources)), mongod_ms[-1]))
    print(f"{args.events} events, pages of {args.patients} of {len(pool)} patients, lowest of {args.rounds} rounds")
    print(f"request time, event of a {args.patients}-patient page: {min(request_ms):.3f} ms")
    for name, label in (("search", f"search event ({args.patients} patients)"), ("small", "one-patient event")):
        print(f"writer, {label}: {min(cpu[name]):.3f} ms CPU per event (mongod {min(db[name]):.3f} ms), "
              f"{sizes[name]:,} bytes stored")
        if args.process:
            server, child, db_ms = (min(column) for column in zip(*split[name], strict=True))
            print(f"  through the writer process: server {server:.3f} ms CPU per event, writer process "
                  f"{child:.3f} ms, mongod {db_ms:.3f} ms")


if __name__ == "__main__":
    main()
