"""Ingest benchmark (issue #2, item 11): registry patients as transaction Bundles, C concurrent clients.

Prints resources/s through the server (HTTP, validation, index extraction, one MongoDB transaction per
Bundle) and through raw PyMongo (the same stored documents, one transaction per Bundle with one insert per
collection, same concurrency) in the same run, and their ratio; then the raw side once more into collections
carrying the indexes the server's own collections have (issue #14 item 1: the raw side alone maintains none, so
this second figure shows what the index maintenance costs), and the server's ratio to that.

    .venv/bin/python bench/ingest.py --patients 2000 --clients 8

``--compare-auth`` (issue #11 item 14): instead of the PyMongo side, two servers on the same database, the default
settings (tokens + audit trail) and ``FHIR_AUTH_MODE=none`` + ``FHIR_AUDIT_ENABLED=false``, given alternating
blocks of ``--block`` Bundles; prints the resources/s of both and the cost in %. ``--audit off``: the first server
without its audit trail (what the tokens alone cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Server,
    add_auth_argument,
    copy_indexes,
    fhir_server,
    guarded_and_plain,
    guarded_label,
    mongod,
    percent_over,
)
from fhir_server import fhirjson
from fhir_server.permissions import Role
from fhir_server.search import SearchParameterRegistry, extract_index_values
from fhir_server.storage.centers import Version, assign
from fhir_server.storage.client import connect
from fhir_server.storage.documents import ResourceWrite, now_ms
from tests.synthetic import registry_bundle


def make_bundles(patients: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [registry_bundle(i, rng)[0] for i in range(patients)]


async def run_clients(items: list[Any], clients: int, work: Any) -> float:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await work(queue.get_nowait())

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    return time.perf_counter() - start


def server_client(server: Server, clients: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    return httpx.AsyncClient(timeout=120, limits=limits, auth=server.auth)


async def submit_all(client: httpx.AsyncClient, base: str, payloads: list[bytes], clients: int) -> float:
    async def submit(payload: bytes) -> None:
        r = await client.post(base, content=payload, headers={"Content-Type": "application/fhir+json"})
        if r.status_code != 200:
            raise RuntimeError(f"transaction failed: {r.status_code} {r.text[:500]}")
    return await run_clients(payloads, clients, submit)


async def through_server(server: Server, bundles: list[dict[str, Any]], clients: int) -> float:
    async with server_client(server, clients) as client:
        return await submit_all(client, server.base, [fhirjson.dumps(b) for b in bundles], clients)


async def alternating(servers: list[Server], bundles: list[dict[str, Any]], clients: int,
                      block: int, warm_up: int) -> list[tuple[int, float]]:
    """(resources, seconds) through each server, given consecutive blocks of ``block`` Bundles in turn (each
    server's client kept open: a token is fetched once); the first ``warm_up`` blocks are not counted."""
    done = [(0, 0.0) for _ in servers]
    http = [server_client(server, clients) for server in servers]
    try:
        for number, start in enumerate(range(0, len(bundles), block)):
            turn = number % len(servers)
            part = bundles[start:start + block]
            seconds = await submit_all(http[turn], servers[turn].base, [fhirjson.dumps(b) for b in part], clients)
            if number >= warm_up:
                resources, total = done[turn]
                done[turn] = (resources + sum(len(b["entry"]) for b in part), total + seconds)
    finally:
        for client in http:
            await client.aclose()
    return done


def compare_auth(uri: str, db: str, args: argparse.Namespace, bundles: list[dict[str, Any]]) -> None:
    with guarded_and_plain(uri, db, args.workers, audit=args.audit == "on") as (guarded, plain):
        ((g_res, g_s), (p_res, p_s)) = asyncio.run(alternating([guarded, plain], bundles, args.clients,
                                                                args.block, warm_up=2))
    guarded_rate, plain_rate = g_res / g_s, p_res / p_s
    print(f"{guarded_label(args):20}: {guarded_rate:8.0f} resources/s  ({g_res} in {g_s:.1f} s)")
    print(f"neither             : {plain_rate:8.0f} resources/s  ({p_res} in {p_s:.1f} s)")
    print(f"cost                : {percent_over(plain_rate, guarded_rate):+.1f} % (time per resource)")


def stored_documents(bundles: list[dict[str, Any]], *, resolve_references: bool = False,
                     ) -> list[list[ResourceWrite]]:
    """What the server stores for each Bundle (ids assigned, index values extracted). References stay as they
    are (``urn:uuid:...``) unless ``resolve_references``: then each one to another entry's ``fullUrl`` becomes
    ``Type/id``, as the server's transaction rewrites it (what the report rows' reads need)."""
    registry = SearchParameterRegistry.load_default()
    out = []
    for bundle in bundles:
        at = now_ms()
        writes = []
        ids = [str(uuid.uuid4()) for _ in bundle["entry"]]
        targets = {entry["fullUrl"]: f"{entry['resource']['resourceType']}/{new}"
                   for entry, new in zip(bundle["entry"], ids, strict=True) if entry.get("fullUrl")}
        for entry, new in zip(bundle["entry"], ids, strict=True):
            resource = _resolved(entry["resource"], targets) if resolve_references else dict(entry["resource"])
            resource["id"] = new
            writes.append(ResourceWrite(resource["resourceType"], resource["id"], 1, at, "POST", resource,
                                        extract_index_values(registry, resource)))
        out.append(writes)
    return out


def _resolved(value: Any, targets: dict[str, str]) -> Any:
    """``value`` with every ``reference`` naming a key of ``targets`` replaced by its value (a copy)."""
    if isinstance(value, dict):
        return {key: targets.get(item, item) if key == "reference" and isinstance(item, str)
                else _resolved(item, targets) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, targets) for item in value]
    return value


async def through_pymongo(uri: str, db_name: str, per_bundle: list[list[ResourceWrite]], clients: int,
                          indexes_from: str | None = None) -> float:
    """Seconds to write ``per_bundle`` as one transaction each, ``clients`` at a time; into collections with the
    indexes of the database ``indexes_from`` when it is given, else with ``_id`` only."""
    client = connect(uri)
    db = client[db_name]
    from pymongo.read_concern import ReadConcern

    from fhir_server.storage.client import MAJORITY

    async def insert(writes: list[ResourceWrite]) -> None:
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        centers = assign(Role.SYSTEM, None, [Version(w.type, w.id, w.resource, created=True) for w in writes], {})
        for w, center in zip(writes, centers, strict=True):
            by_type[w.type].append(w.current_document(center))

        async def txn(session: Any) -> None:
            for kind, docs in by_type.items():
                await db[kind].insert_many(docs, session=session)
            await db["history"].insert_many([w.history_document(c) for w, c in zip(writes, centers, strict=True)],
                                            session=session)

        async with client.start_session() as session:
            await session.with_transaction(txn, read_concern=ReadConcern("snapshot"), write_concern=MAJORITY)

    collections = {w.type for ws in per_bundle for w in ws} | {"history"}
    for kind in collections:
        await db.create_collection(kind)
    if indexes_from:
        await copy_indexes(client[indexes_from], db, collections)
    try:
        return await run_clients(per_bundle, clients, insert)
    finally:
        await client.drop_database(db_name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn workers of the server (default: the server's own, FHIR_WORKERS: the CPU count)")
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--block", type=int, default=50, help="Bundles per block of --compare-auth")
    add_auth_argument(parser)
    args = parser.parse_args()

    bundles = make_bundles(args.patients, args.seed)
    resources = sum(len(b["entry"]) for b in bundles)
    print(f"{args.patients} patients, {resources} resources ({resources / args.patients:.1f} per Bundle), "
          f"{args.clients} clients, {args.workers or 'the default number of'} server workers, {os.cpu_count()} cores, "
          + ("tokens + audit trail vs neither, alternating blocks" if args.compare_auth
             else "with tokens" if args.auth else "FHIR_AUTH_MODE=none"))
    with mongod() as uri:
        db = f"bench_ingest_{uuid.uuid4().hex[:6]}"
        if args.compare_auth:
            compare_auth(uri, db, args, bundles)
            return
        with fhir_server(uri, db, args.workers, auth=args.auth) as server:
            server_s = asyncio.run(through_server(server, bundles, args.clients))
        raw_s = asyncio.run(through_pymongo(uri, db + "_raw", stored_documents(bundles), args.clients))
        indexed_s = asyncio.run(through_pymongo(uri, db + "_rawix", stored_documents(bundles), args.clients, db))
    server_rate, raw_rate, indexed_rate = resources / server_s, resources / raw_s, resources / indexed_s
    print(f"server : {server_rate:8.0f} resources/s  ({server_s:.1f} s, {args.patients / server_s:.0f} Bundles/s)")
    print(f"pymongo: {raw_rate:8.0f} resources/s  ({raw_s:.1f} s)")
    print(f"ratio  : server = {server_rate / raw_rate:.2f} x raw PyMongo")
    print(f"pymongo with the server's indexes: {indexed_rate:8.0f} resources/s  ({indexed_s:.1f} s); "
          f"server = {server_rate / indexed_rate:.2f} x that")


if __name__ == "__main__":
    main()
