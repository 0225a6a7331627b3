"""mongod's own view of an ingest (issue #14): what the server asks of the database per stored resource.

Ingests registry patients through the server (as ``bench/ingest.py`` does, without the raw side) into a private
mongod with the profiler on (level 2: every operation), then prints

* ``serverStatus().opcounters`` over the ingest (inserts, queries, updates, commands) per resource;
* the profiled operations grouped by collection and kind: how many, keys and documents examined, keys
  inserted, and the plan (``planSummary``, what ``explain`` would say) of the reads;
* ``collStats`` of every collection: documents, data size, and each index's size, per stored resource.

The profiler costs CPU itself: this is for counting, never for timing (``bench/cpu.py`` times).

    .venv/bin/python bench/mongod_view.py --patients 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fhir_server, mongod
from bench.ingest import make_bundles, through_server

COUNTERS = ("insert", "query", "update", "delete", "getmore", "command")


def opcounters(client: MongoClient) -> dict[str, int]:
    found = client.admin.command("serverStatus")["opcounters"]
    return {name: int(found[name]) for name in COUNTERS}


def kind_of(doc: dict[str, Any]) -> str:
    """``insert``, ``update``, ``find``, ``aggregate``... of a profile document."""
    command = doc.get("command") or {}
    for name in ("insert", "update", "find", "aggregate", "count", "delete", "findAndModify"):
        if name in command:
            return name
    return str(doc.get("op"))


def profile_summary(db: Any, resources: int) -> None:
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    plans: dict[tuple[str, str], set[str]] = defaultdict(set)
    for doc in db["system.profile"].find({"ns": {"$not": {"$regex": r"\.system\."}}}):
        key = (doc["ns"].split(".", 1)[1], kind_of(doc))
        group = groups[key]
        group["ops"] += 1
        for field in ("keysExamined", "docsExamined", "keysInserted", "nreturned", "ninserted", "nModified",
                      "nMatched", "nUpserted"):
            group[field] += int(doc.get(field) or 0)
        if doc.get("planSummary"):
            plans[key].add(str(doc["planSummary"])[:160])
    print(f"\nprofiled operations ({resources} resources stored)")
    print(f"{'collection':<22} {'op':<10} {'ops':>6} {'keysExam':>9} {'docsExam':>9} {'keysIns':>8} "
          f"{'keysIns/doc':>11}  plan")
    for (ns, kind), group in sorted(groups.items(), key=lambda item: -item[1]["ops"]):
        plan = " | ".join(sorted(plans[(ns, kind)]))[:120]
        per_doc = group["keysInserted"] / max(group["ninserted"] + group["nUpserted"], 1)
        print(f"{ns:<22} {kind:<10} {group['ops']:>6} {group['keysExamined']:>9} {group['docsExamined']:>9} "
              f"{group['keysInserted']:>8} {per_doc:>11.1f}  {plan}")


def collection_sizes(db: Any, resources: int) -> None:
    print(f"\ncollStats ({resources} resources)")
    totals: dict[str, int] = defaultdict(int)
    for name in sorted(db.list_collection_names()):
        if name.startswith("system."):
            continue
        stats = db.command("collStats", name)
        if not stats.get("count"):
            continue
        totals["size"] += int(stats["size"])
        totals["indexes"] += int(stats["totalIndexSize"])
        print(f"{name:<22} docs {stats['count']:>6}  data {stats['size'] / 1024:>8.0f} KiB  "
              f"indexes {stats['totalIndexSize'] / 1024:>7.0f} KiB")
        for index, size in sorted(stats["indexSizes"].items(), key=lambda item: -item[1]):
            print(f"    {index[:70]:<70} {size / 1024:>7.0f} KiB")
    print(f"total: data {totals['size'] / 1024:.0f} KiB, indexes {totals['indexes'] / 1024:.0f} KiB, "
          f"{(totals['size'] + totals['indexes']) / resources:.0f} bytes per resource")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    bundles = make_bundles(args.patients, seed=2008)  # bench/ingest.py's cohort, 8 clients, 2 server workers
    resources = sum(len(b["entry"]) for b in bundles)
    with mongod() as uri:
        name = f"bench_view_{uuid.uuid4().hex[:6]}"
        client: MongoClient = MongoClient(uri)
        db = client[name]
        with fhir_server(uri, name, 2, auth=False) as server:
            db.command("profile", 0)
            db.drop_collection("system.profile")  # the default 1 MB would keep only the last few Bundles
            db.create_collection("system.profile", capped=True, size=512 * 1024 * 1024)
            db.command("profile", 2)
            before = opcounters(client)
            asyncio.run(through_server(server, bundles, 8))
            after = opcounters(client)
            db.command("profile", 0)
        print(f"{args.patients} patients, {resources} resources; opcounters per resource over the ingest:")
        print("  " + ", ".join(f"{k} {(after[k] - before[k]) / resources:.2f}" for k in COUNTERS))
        profile_summary(db, resources)
        collection_sizes(db, resources)
        client.close()


if __name__ == "__main__":
    main()
