"""How cost grows with the data (issue #14 item 4): registry patients loaded step by step through the bulk path,
and at each step what a user of the registry pays.

One mongod and one server (``fhir-server serve``) for the whole run. Up to each step (``--steps``, patient
counts) the next patients are generated (``bench/load.py``: one NDJSON file per type, ids assigned, references
resolved, as an ``$export`` writes them) and loaded with the server's ``$import`` (``fhir_server/bulk/loader.py``:
every resource validated as a create or update of its own, stored in batches). Then, at that size:

* ingest: resources/s of the chunk just loaded (the patients since the previous step);
* search: p95 of the five queries of ``bench/search.py`` (rows a-e) over HTTP, beside the hand-written PyMongo
  query, alternating blocks as there; each server request's time is kept in the JSON (``server_ms``, in order),
  and the requests that came first after a block of hand-written queries are printed apart (``after_switch``);
* ``$registry-report``: median of 7 requests over HTTP (``bench/report.py``);
* ``$export``: resources/s and the exporting process's peak RSS (``bench/export.py``: a fresh process, so the
  peak is the export's own); its NDJSON files are removed afterwards so they do not count in the next sizes;
* size: ``dbStats`` (data, storage, index size) and ``collStats`` of the largest collections.

The figures go to a JSON file and a PNG (``--out``, default ``bench/results/scale-<patients>``); matplotlib comes
with the ``bench`` extra (``pip install -e '.[bench]'``). At the end the issue's targets (at 100,000 patients:
search p95 < 50 ms and <= 3x hand-written, report < 2 s, export memory flat) are checked against the last step.

    .venv/bin/python bench/scale.py                                   # 100,000 patients, steps 10k/50k/100k
    .venv/bin/python bench/scale.py --patients 5000 --steps 1000,2500,5000
    .venv/bin/python bench/scale.py --plot bench/results/scale-5000.json   # redraw the PNG only
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Server, add_auth_argument, fhir_server, mongod, percentiles
from bench.export import run_child
from bench.load import patients_resources, through_import, write_files
from bench.report import _timed
from bench.search import Queries, time_pairs
from fhir_server.storage.client import CODEC_OPTIONS
from fhir_server.storage.files import EXPORT_BUCKET

QUERIES = ("(a)", "(b)", "(c)", "(d)", "(e)")  # the five queries of bench/search.py, without its variants
BLOCK = 25  # requests per block of ``time_pairs``: server and hand-written queries alternate by blocks
TARGET_P95_MS = 50.0
TARGET_RATIO = 3.0
TARGET_REPORT_MS = 2000.0
FLAT_GROWTH = 1.25  # export memory is flat when the last peak RSS is within 25 % of the first step's
BIG_COLLECTIONS = ("Observation", "history", "Patient", "Condition", "MedicationStatement")


def parse_steps(text: str | None, patients: int) -> list[int]:
    if not text:
        return sorted({max(1, patients // 10), patients // 2, patients} - {0})
    steps = sorted({int(s) for s in text.split(",") if s.strip()})
    if not steps or steps[0] <= 0 or steps[-1] > patients:
        raise SystemExit(f"--steps must be positive patient counts up to --patients ({patients})")
    return steps


# -- one step's measurements ---------------------------------------------------------------------------------


def load_chunk(server: Server, folder: Path, step: int, resources: list[dict[str, Any]]) -> dict[str, float]:
    """The resources through ``$import`` (files under the server's FHIR_IMPORT_DIR); the rate."""
    sub = folder / f"step-{step}"
    sub.mkdir()
    names = [f"{sub.name}/{name}" for name in write_files(resources, sub)]
    seconds = asyncio.run(through_import(server, names))
    for file in sub.iterdir():
        file.unlink()
    return {"chunk_resources": len(resources), "chunk_seconds": seconds, "ingest_rate": len(resources) / seconds}


def search_p95(server: Server, db: Any, pseudonyms: list[str], repeat: int, seed: int) -> dict[str, Any]:
    """p50/p95 of each of the five queries, server and hand-written, as bench/search.py times them."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=60, headers={"Accept": "application/fhir+json"}, auth=server.auth) as http:
        for name, make, raw in Queries(db, pseudonyms, seed).cases():
            if not name.startswith(QUERIES):
                continue
            time_pairs(http, server.base, make, raw, max(5, repeat // 10), BLOCK)  # warm-up
            served, hand, rows, hand_rows = time_pairs(http, server.base, make, raw, repeat, BLOCK)
            (s50, s95), (h50, h95) = percentiles(served), percentiles(hand)
            out[name] = {"server_p50_ms": s50, "server_p95_ms": s95, "pymongo_p50_ms": h50, "pymongo_p95_ms": h95,
                         "ratio_p95": s95 / h95, "rows": rows, "pymongo_rows": hand_rows,
                         "server_ms": [round(ms, 2) for ms in served]}
    return out


def after_switch(samples: list[float]) -> tuple[list[float], list[float]]:
    """The server's requests that came first after a block of hand-written queries, and the others: a tail
    made of the first ones is what the hand-written query left behind (its pages in mongod's cache, its CPU)."""
    first = [ms for i, ms in enumerate(samples) if i % BLOCK == 0]
    return first, [ms for i, ms in enumerate(samples) if i % BLOCK]


async def report_ms(server: Server) -> float:
    async with httpx.AsyncClient(base_url=server.base, auth=server.auth, timeout=120) as client:
        return await _timed(client, f"{server.base}/$registry-report")


def export_figures(uri: str, db_name: str, db: Any) -> dict[str, float]:
    """``$export`` in a fresh process (bench/export.py); then its files are dropped, so that they are not
    counted in the database size of the next steps."""
    result = run_child(uri, db_name, "$export")
    for suffix in ("files", "chunks"):
        db[f"{EXPORT_BUCKET}.{suffix}"].drop()
    return {"export_resources": result["resources"], "export_seconds": result["seconds"],
            "export_rate": result["resources"] / result["seconds"], "export_rss_before_mb": result["rss_before_mb"],
            "export_rss_peak_mb": result["rss_peak_mb"], "export_megabytes": result["megabytes"]}


def sizes(db: Any) -> dict[str, Any]:
    stats = db.command("dbStats")
    collections = {}
    for name in BIG_COLLECTIONS:
        coll = db.command("collStats", name)
        collections[name] = {"count": coll["count"], "data_mb": coll["size"] / 2**20,
                             "storage_mb": coll["storageSize"] / 2**20, "index_mb": coll["totalIndexSize"] / 2**20}
    return {"objects": stats["objects"], "data_mb": stats["dataSize"] / 2**20,
            "storage_mb": stats["storageSize"] / 2**20, "index_mb": stats["indexSize"] / 2**20,
            "collections": collections}


def print_step(row: dict[str, Any]) -> None:
    print(f"\n== {row['patients']} patients, {row['resources']} resources ==")
    print(f"ingest  : {row['ingest_rate']:.0f} resources/s (last {row['chunk_resources']} in "
          f"{row['chunk_seconds']:.0f} s)")
    print(f"{'search':44} {'server p95':>10} {'pymongo p95':>11} {'ratio':>6}  rows")
    for name, q in row["search"].items():
        print(f"{name:44} {q['server_p95_ms']:8.1f}ms {q['pymongo_p95_ms']:9.1f}ms {q['ratio_p95']:5.1f}x  "
              f"{q['rows']}/{q['pymongo_rows']}")
        if q.get("server_ms"):  # (a run recorded before the samples were kept has none)
            first, others = after_switch(q["server_ms"])
            print(f"{'':44} first after a switch: {', '.join(f'{ms:.1f}' for ms in first)} ms; the others: "
                  "p50 {:.1f}, p95 {:.1f} ms".format(*percentiles(others)))
    print(f"report  : $registry-report median {row['report_ms']:.0f} ms")
    print(f"export  : {row['export_rate']:.0f} resources/s ({row['export_resources']} in "
          f"{row['export_seconds']:.1f} s), RSS {row['export_rss_before_mb']:.0f} MB before, "
          f"peak {row['export_rss_peak_mb']:.0f} MB")
    s = row["size"]
    print(f"size    : data {s['data_mb']:.0f} MB, storage {s['storage_mb']:.0f} MB, indexes {s['index_mb']:.0f} MB "
          f"({s['objects']} documents)")


# -- targets ---------------------------------------------------------------------------------------------------


def check_targets(steps: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """Each target of issue #14 item 4, judged on the last step (the issue sets them at 100,000 patients)."""
    last, first = steps[-1], steps[0]
    checks = []
    for name, q in last["search"].items():
        checks.append((f"search {name}: p95 {q['server_p95_ms']:.1f} ms < {TARGET_P95_MS:.0f} ms",
                       q["server_p95_ms"] < TARGET_P95_MS))
        checks.append((f"search {name}: {q['ratio_p95']:.1f}x hand-written <= {TARGET_RATIO:.0f}x",
                       q["ratio_p95"] <= TARGET_RATIO))
    checks.append((f"$registry-report {last['report_ms']:.0f} ms < {TARGET_REPORT_MS:.0f} ms",
                   last["report_ms"] < TARGET_REPORT_MS))
    checks.append((f"export peak RSS {last['export_rss_peak_mb']:.0f} MB at {last['patients']} patients within "
                   f"{FLAT_GROWTH:.2f}x of {first['export_rss_peak_mb']:.0f} MB at {first['patients']} (flat)",
                   last["export_rss_peak_mb"] <= first["export_rss_peak_mb"] * FLAT_GROWTH))
    return checks


def print_targets(result: dict[str, Any]) -> None:
    steps = result["steps"]
    print(f"\ntargets (issue #14: at 100,000 patients), judged at {steps[-1]['patients']} patients:")
    for text, met in check_targets(steps):
        print(f"  [{'met' if met else 'NOT met'}] {text}")


# -- the picture -----------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], png: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("no PNG: matplotlib is not installed (pip install -e '.[bench]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    x = [s["patients"] for s in steps]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    (ingest, search, report), (export, memory, size) = axes
    ingest.plot(x, [s["ingest_rate"] for s in steps], "o-")
    ingest.set_title("ingest ($import), resources/s of the last chunk")
    for name in steps[-1]["search"]:
        line, = search.plot(x, [s["search"][name]["server_p95_ms"] for s in steps], "o-", label=name[:32])
        search.plot(x, [s["search"][name]["pymongo_p95_ms"] for s in steps], "x--", color=line.get_color())
    search.axhline(TARGET_P95_MS, color="red", linewidth=0.8)
    # log scale: a hand-written query of seconds ((e)'s sort in memory) would flatten the server's 10-50 ms
    search.set_yscale("log")
    search.set_title("search p95, ms, log scale (solid server, dashed PyMongo)")
    search.legend(fontsize=7, loc="upper left")
    report.plot(x, [s["report_ms"] for s in steps], "o-")
    report.axhline(TARGET_REPORT_MS, color="red", linewidth=0.8)
    report.set_title("$registry-report, ms (median)")
    export.plot(x, [s["export_rate"] for s in steps], "o-")
    export.set_title("$export, resources/s")
    memory.plot(x, [s["export_rss_peak_mb"] for s in steps], "o-", label="peak")
    memory.plot(x, [s["export_rss_before_mb"] for s in steps], "x--", label="before kick-off")
    memory.set_title("$export process RSS, MB")
    memory.legend(fontsize=7)
    for key, label in (("data_mb", "data"), ("storage_mb", "storage"), ("index_mb", "indexes")):
        size.plot(x, [s["size"][key] for s in steps], "o-", label=label)
    size.set_title("database size, MB")
    size.legend(fontsize=7)
    for axis in axes.flat:
        axis.set_xlabel("patients")
        if axis.get_yscale() == "linear":
            axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    fig.suptitle(f"ifp-fhir at growing size: {result['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


# -- the run ---------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, steps: list[int]) -> dict[str, Any]:
    result: dict[str, Any] = {"command": "bench/scale.py " + " ".join(sys.argv[1:]), "cores": os.cpu_count(),
                              "python": platform.python_version(), "auth": args.auth,
                              "started": datetime.now(UTC).isoformat(timespec="seconds"), "steps": []}
    cohort = patients_resources(args.seed)
    pseudonyms: list[str] = []
    loaded = resources_total = 0
    with mongod() as uri, tempfile.TemporaryDirectory(prefix="ifp-bench-scale-") as folder:
        db_name = f"bench_scale_{uuid.uuid4().hex[:6]}"
        client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
        db = client[db_name]
        try:
            with fhir_server(uri, db_name, args.workers, auth=args.auth,
                             extra_env={"FHIR_IMPORT_DIR": folder}) as server:
                for step in steps:
                    chunk = [r for one in itertools.islice(cohort, step - loaded) for r in one]
                    pseudonyms += [r["identifier"][0]["value"] for r in chunk if r["resourceType"] == "Patient"]
                    row: dict[str, Any] = {"patients": step}
                    row.update(load_chunk(server, Path(folder), step, chunk))
                    loaded, resources_total = step, resources_total + len(chunk)
                    del chunk
                    row["resources"] = resources_total
                    row["size"] = sizes(db)
                    row["search"] = search_p95(server, db, pseudonyms, args.repeat, args.seed)
                    row["report_ms"] = asyncio.run(report_ms(server))
                    row.update(export_figures(uri, db_name, db))
                    result["steps"].append(row)
                    print_step(row)
                    write_json(result, args.out)
        finally:
            client.drop_database(db_name)
            client.close()
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def write_json(result: dict[str, Any], out: Path) -> None:
    """After every step: a run cut short keeps what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--steps", help="patient counts to measure at, comma-separated (default: 10 %%, 50 %%, all)")
    parser.add_argument("--repeat", type=int, default=100, help="requests per search query and step")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the server")
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--out", type=Path, help="JSON and PNG path without suffix (default "
                                                  "bench/results/scale-<patients>)")
    parser.add_argument("--plot", type=Path, help="only draw the PNG of this JSON result")
    add_auth_argument(parser)
    args = parser.parse_args()
    if args.plot:
        result = json.loads(args.plot.read_text())
        plot(result, args.plot.with_suffix(".png"))
        print_targets(result)
        return
    steps = parse_steps(args.steps, args.patients)
    args.out = args.out or Path(__file__).resolve().parent / "results" / f"scale-{args.patients}"
    print(f"{args.patients} patients, steps {steps}, {os.cpu_count()} cores, {args.workers} server workers, "
          f"{'with tokens' if args.auth else 'FHIR_AUTH_MODE=none'}")
    started = time.perf_counter()
    result = run(args, steps)
    result["wall_seconds"] = time.perf_counter() - started
    write_json(result, args.out)
    plot(result, args.out.with_suffix(".png"))
    print_targets(result)
    print(f"\n{args.out.with_suffix('.json')}; {result['wall_seconds'] / 60:.1f} minutes in all")


if __name__ == "__main__":
    main()
