"""Bulk load benchmark (issue #14 item 3): registry patients as NDJSON files (one per type, ids assigned and
references resolved, as an ``$export`` writes them), loaded by the server's ``$import`` (ping and pull from
``FHIR_IMPORT_DIR``: every resource validated as a create/update of its own, stored in batches) and, in the same
run, the same stored documents (current and history, search values extracted) inserted with raw PyMongo in
transactions of the same batch size, one after the other like the one import job.

    .venv/bin/python bench/load.py --patients 300
    .venv/bin/python bench/load.py --patients 300 --via load   # `fhir-server load DIR` instead of $import

Prints resources/s of both and their ratio; then the raw side once more into collections with the indexes the
server's own collections have (its search values, history and center indexes: the raw side alone has none), and
the ratio to that. ``--split`` runs both in this process and splits each side's time into its CPU and mongod's.
The machine is shared: quote a figure with its command and the load
of the moment.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Server, add_auth_argument, copy_indexes, fhir_server, mongod
from bench.search import stored_centers
from fhir_server import fhirjson
from fhir_server.bulk.loader import BATCH_SIZE
from fhir_server.load_command import CHUNK, run_load
from fhir_server.search import SearchParameterRegistry, extract_index_values
from fhir_server.storage.client import connect
from fhir_server.storage.documents import ResourceWrite, now_ms
from tests.synthetic import registry_bundle


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


def patients_resources(seed: int) -> Iterator[list[dict[str, Any]]]:
    """Patient after patient (endless), the resources each adds to the store: its entries with fresh ids and
    their references to other entries rewritten to ``Type/id``, and its center's Organization the first time a
    center is seen (later patients refer to it)."""
    rng = random.Random(seed)
    centers: dict[str, str] = {}
    for index in itertools.count():
        bundle = registry_bundle(index, rng)[0]
        ids: dict[str, str] = {}
        out: list[dict[str, Any]] = []
        for entry in bundle["entry"]:
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind == "Organization":
                key = entry["request"]["ifNoneExist"]
                if key not in centers:
                    centers[key] = str(uuid.uuid4())
                    out.append({**resource, "id": centers[key]})
                ids[entry["fullUrl"]] = f"Organization/{centers[key]}"
            else:
                ident = str(uuid.uuid4())
                ids[entry["fullUrl"]] = f"{kind}/{ident}"
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Organization":
                out.append(_rewrite({**resource, "id": ids[entry["fullUrl"]].split("/", 1)[1]}, ids))
        yield out


def make_resources(patients: int, seed: int) -> list[dict[str, Any]]:
    """The first ``patients`` of ``patients_resources`` as one list."""
    return [r for one in itertools.islice(patients_resources(seed), patients) for r in one]


def write_files(resources: list[dict[str, Any]], folder: Path) -> list[str]:
    """One NDJSON file per type, Organization and Patient first (what references them comes after), named so
    that their name order is that order too (``fhir-server load DIR`` loads a directory's files in name order)."""
    by_type: dict[str, list[bytes]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(fhirjson.dumps(r))
    order = sorted(by_type, key=lambda t: (t != "Organization", t != "Patient", t))
    names = [f"{n}-{kind}.ndjson" for n, kind in enumerate(order, 1)]
    for kind, name in zip(order, names, strict=True):
        (folder / name).write_bytes(b"\n".join(by_type[kind]) + b"\n")
    return names


def through_load(server: Server, folder: str) -> float:
    """Seconds of ``fhir-server load FOLDER`` (``run_load`` with the command's defaults: chunks of
    ``load_command.CHUNK``, as many at once as the machine has cores) against ``server``."""
    out = io.StringIO()
    start = time.perf_counter()
    status = run_load(Path(folder), server.base, auth=server.auth, out=out, jobs=os.cpu_count() or 1)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"fhir-server load failed ({status}): {out.getvalue()[-2000:]}")
    return elapsed


async def through_import(server: Server, files: list[str]) -> float:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "input", "part": [{"name": "url", "valueUrl": name}]} for name in files]}
    async with httpx.AsyncClient(timeout=600, auth=server.auth) as client:
        start = time.perf_counter()
        r = await client.post(f"{server.base}/$import", content=fhirjson.dumps(body),
                              headers={"Content-Type": "application/fhir+json", "Prefer": "respond-async"})
        if r.status_code != 202:
            raise RuntimeError(f"kick-off failed: {r.status_code} {r.text[:500]}")
        status = r.headers["content-location"]
        while True:
            answer = await client.get(status)
            if answer.status_code == 200:
                elapsed = time.perf_counter() - start
                manifest = answer.json()
                failed = sum(e["count"] for e in manifest["error"])
                if failed:
                    raise RuntimeError(f"{failed} lines failed: {manifest['error']}")
                return elapsed
            if answer.status_code != 202:
                raise RuntimeError(f"import failed: {answer.status_code} {answer.text[:500]}")
            await asyncio.sleep(0.2)


def stored_documents(resources: list[dict[str, Any]]) -> list[ResourceWrite]:
    registry = SearchParameterRegistry.load_default()
    at = now_ms()
    return [ResourceWrite(r["resourceType"], r["id"], 1, at, "PUT", r, extract_index_values(registry, r))
            for r in resources]


async def through_pymongo(uri: str, db_name: str, writes: list[ResourceWrite], indexes_from: str | None = None
                          ) -> float:
    from pymongo.read_concern import ReadConcern

    from fhir_server.storage.client import MAJORITY

    client = connect(uri)
    db = client[db_name]

    async def insert(batch: list[tuple[ResourceWrite, str | None]]) -> None:
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for w, center in batch:
            by_type[w.type].append(w.current_document(center))

        async def txn(session: Any) -> None:
            for kind, docs in by_type.items():
                await db[kind].insert_many(docs, session=session)
            await db["history"].insert_many([w.history_document(center) for w, center in batch], session=session)

        async with client.start_session() as session:
            await session.with_transaction(txn, read_concern=ReadConcern("snapshot"), write_concern=MAJORITY)

    collections = {w.type for w in writes} | {"history"}
    for kind in collections:
        await db.create_collection(kind)
    if indexes_from:
        await copy_indexes(client[indexes_from], db, collections)
    with_centers = list(zip(writes, stored_centers(writes), strict=True))  # the center the server stores
    try:
        start = time.perf_counter()
        for i in range(0, len(writes), BATCH_SIZE):
            await insert(with_centers[i:i + BATCH_SIZE])
        return time.perf_counter() - start
    finally:
        await client.drop_database(db_name)
        await client.close()


def mongod_cpu() -> float:
    """CPU seconds used so far by the mongod this process started (``bench.common.mongod``)."""
    from bench.cpu import snapshot

    return sum(s.cpu for s in snapshot().values() if s.ppid == os.getpid() and "mongod" in s.cmdline)


def cpu_line(what: str, count: int, wall: float, cpu: float, mongod_s: float) -> str:
    """Wall, this process's CPU and mongod's CPU of one side; "idle" is the share of the wall neither used (with
    the two strictly taking turns it is what the machine's load took; below zero they overlapped)."""
    return (f"{what}: {count / wall:6.0f} resources/s ({wall:.1f} s wall), CPU: this process {cpu:.1f} s "
            f"({cpu / max(1, count) * 1000:.2f} ms/resource), mongod {mongod_s:.1f} s "
            f"({mongod_s / max(1, count) * 1000:.2f} ms/resource), idle {1 - (cpu + mongod_s) / wall:+.0%}")


async def profiled_import(uri: str, folder: str, files: list[str], top: int, dump: str | None = None) -> str:
    """The import job run in this process (no HTTP, no polling), under cProfile when ``top`` (where its own time
    goes), else plain: its wall time against its CPU and mongod's (``--split``)."""
    import cProfile
    import pstats
    from datetime import timedelta

    from fhir_server.bootstrap import start_services
    from fhir_server.bulk import import_operation
    from fhir_server.bulk.import_jobs import ImportInput, ImportJob, ImportJobs, new_job_id
    from fhir_server.settings import Settings

    settings = Settings(mongodb_uri=uri, mongodb_db=f"bench_profile_{uuid.uuid4().hex[:6]}", auth_mode="none",
                        import_dir=Path(folder))
    services = await start_services(settings, uri)
    now = now_ms()
    job = ImportJob(id=new_job_id(), request="bench", transaction_time=now, expires=now + timedelta(hours=1),
                    base_url="http://bench/fhir", caller="bench", scopes=["system/*.*"],
                    inputs=[ImportInput(url=name) for name in files])
    await ImportJobs(services.store).insert(job)
    profile = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    start, cpu, mongod_s = time.perf_counter(), time.process_time(), mongod_cpu()
    if top:
        profile.enable()
    await import_operation.run(services, job)
    profile.disable()
    wall, cpu, mongod_s = time.perf_counter() - start, time.process_time() - cpu, mongod_cpu() - mongod_s
    done = await ImportJobs(services.store).get(job.id)
    assert done is not None
    stored = sum(i.count for i in done.inputs)
    failed = sum(i.errors for i in done.inputs)
    print(cpu_line(f"in-process import ({failed} failed)", stored, wall, cpu, mongod_s), flush=True)
    if not top:
        await services.close()
        return settings.mongodb_db
    stats = pstats.Stats(profile)
    if dump:
        stats.dump_stats(dump)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    await services.close()
    return settings.mongodb_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--profile", type=int, metavar="TOP", default=0,
                        help="run the import job in this process under cProfile and print the TOP functions "
                             "(cumulative, then own time) instead of the comparison")
    parser.add_argument("--dump", help="with --profile: also write the cProfile stats to this file (pstats)")
    parser.add_argument("--split", action="store_true",
                        help="run the import job and then the raw PyMongo side in this process (no HTTP, no "
                             "profiler) and print each side's wall time, its CPU and mongod's")
    parser.add_argument("--via", choices=("import", "load"), default="import",
                        help="the server's side: the $import operation (one server worker: one import job runs "
                             "in one process), or `fhir-server load` of the files (the server's default workers)")
    add_auth_argument(parser)
    args = parser.parse_args()

    resources = make_resources(args.patients, args.seed)
    if args.profile:
        with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-bench-load-") as folder:
            asyncio.run(profiled_import(uri, folder, write_files(resources, Path(folder)), args.profile,
                                        args.dump))
        return
    if args.split:
        with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-bench-load-") as folder:
            server_db = asyncio.run(profiled_import(uri, folder, write_files(resources, Path(folder)), 0))
            writes = stored_documents(resources)
            for what, indexes in (("raw PyMongo", None), ("raw PyMongo, the server's indexes", server_db)):
                cpu, mongod_s = time.process_time(), mongod_cpu()  # both include creating the collections
                raw_s = asyncio.run(through_pymongo(uri, f"bench_split_{uuid.uuid4().hex[:6]}", writes, indexes))
                print(cpu_line(what, len(writes), raw_s, time.process_time() - cpu, mongod_cpu() - mongod_s))
        return
    label = "fhir-server load" if args.via == "load" else "$import"
    batches = f"chunks of {CHUNK}" if args.via == "load" else f"batches of {BATCH_SIZE}"
    print(f"{args.patients} patients, {len(resources)} resources, {batches}, {os.cpu_count()} cores, "
          f"{'with tokens' if args.auth else 'FHIR_AUTH_MODE=none'}, registry rules on")
    with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-bench-load-") as folder:
        files = write_files(resources, Path(folder))
        db = f"bench_load_{uuid.uuid4().hex[:6]}"
        if args.via == "load":
            with fhir_server(uri, db, None, auth=args.auth) as server:
                server_s = through_load(server, folder)
        else:
            with fhir_server(uri, db, 1, auth=args.auth, extra_env={"FHIR_IMPORT_DIR": folder}) as server:
                server_s = asyncio.run(through_import(server, files))
        print(f"{label}: {len(resources) / server_s:8.0f} resources/s  ({server_s:.1f} s)", flush=True)
        raw_s = asyncio.run(through_pymongo(uri, db + "_raw", stored_documents(resources)))
        indexed_s = asyncio.run(through_pymongo(uri, db + "_rawix", stored_documents(resources), db))
    server_rate, raw_rate, indexed_rate = (len(resources) / server_s, len(resources) / raw_s,
                                           len(resources) / indexed_s)
    print(f"pymongo: {raw_rate:8.0f} resources/s  ({raw_s:.1f} s)")
    print(f"ratio  : {label} = {server_rate / raw_rate:.2f} x raw PyMongo")
    print(f"pymongo with the server's indexes: {indexed_rate:8.0f} resources/s  ({indexed_s:.1f} s); "
          f"{label} = {server_rate / indexed_rate:.2f} x that")


if __name__ == "__main__":
    main()
