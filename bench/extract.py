"""Search index extraction, cold (issue #14, item 2): what ``extract_index_values`` costs a write the first time
it meets each value (a fresh process: the per-value caches of numbers, quantities and dates are empty, as they are
for most of a registry's lab values), and how many keys the wildcard index gets per resource (each one a write to
the index in mongod).

The resources are ``bench/ingest.py``'s registry Bundles (``--patients``, ``--seed``). Each ``--tree LABEL=PATH``
is measured in a process of its own, importing that checkout's ``fhir_server`` (``PYTHONPATH``), so that two
versions compare on the same resources; ``--rounds`` interleaves them. CPU time of the process
(``time.process_time``) over one pass, after one resource to load the tables::

    .venv/bin/python bench/extract.py --patients 400 --rounds 2 --tree before=/tmp/wt-base --tree now=.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def index_keys(node: Any) -> int:
    """The leaves of a resource's ``sp``: what the wildcard index holds of it (sort keys are projected out)."""
    if isinstance(node, dict):
        return sum(index_keys(v) for k, v in node.items() if k != "_sort")
    if isinstance(node, list):
        return sum(index_keys(v) for v in node)
    return 1


def worker(tree: str, patients: int, seed: int) -> dict[str, float]:
    """One cold pass in this process, over ``tree``'s ``fhir_server`` (the registry data from this checkout)."""
    sys.path.insert(0, tree)
    sys.path.insert(1, str(HERE.parents[1]))
    from bench.ingest import make_bundles  # imported here: after the tree is on the path
    from fhir_server.search import SearchParameterRegistry, extract_index_values

    registry = SearchParameterRegistry.load_default()
    resources = [e["resource"] for bundle in make_bundles(patients, seed) for e in bundle["entry"]]
    extract_index_values(registry, resources[0])
    started = time.process_time()
    extracted = [extract_index_values(registry, r) for r in resources]
    seconds = time.process_time() - started
    return {"resources": len(resources), "us_per_resource": seconds / len(resources) * 1e6,
            "keys_per_resource": sum(index_keys(sp) for sp in extracted) / len(resources)}


def measure(tree: Path, patients: int, seed: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(HERE), "--worker", str(tree), "--patients", str(patients),
                          "--seed", str(seed)], env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout to measure (default: this one, as 'now')")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.patients, args.seed)))
        return
    trees = [(label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in args.tree)] or [
        ("now", HERE.parents[1])]
    for round_ in range(1, args.rounds + 1):
        for label, tree in trees:
            r = measure(tree, args.patients, args.seed)
            print(f"round {round_} {label:>8}: {int(r['resources'])} resources, cold extraction "
                  f"{r['us_per_resource']:.1f} us per resource, {r['keys_per_resource']:.1f} wildcard index keys "
                  "per resource", flush=True)


if __name__ == "__main__":
    main()
