"""What one report-row refresh costs mongod (issue #14 item 1): the rows of one new patient made from its
Bundle's documents (``rows_of_documents``, what a transaction Bundle creating a Patient runs now: the documents
``may_make_a_row`` keeps) beside the same with every document of the Bundle (before), without the search values,
without any document (the pipeline's own parse and plan), the collections' path (``rows_in_transaction``: five
``$lookup``s) and a trivial ``$documents`` aggregate (a command's floor). Each is run once per patient, outside a
transaction, on a private mongod holding the patients (written by ``ResourceStore.apply``); mongod's CPU from
``/proc/<mongod>/stat`` (10 ms ticks: use at least 50 patients).

    .venv/bin/python bench/row_cost.py --patients 50 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import make_bundles, stored_documents
from bench.mongod_cost import Bundle, cpu_seconds
from fhir_server.bootstrap import search_indexes
from fhir_server.context import RequestContext
from fhir_server.reports.pipeline import ROW_DEFINITION, rows_in_transaction, rows_of_documents
from fhir_server.search import SearchParameterRegistry
from fhir_server.storage.aggregation import guarded_documents
from fhir_server.storage.mongod import temporary_node
from fhir_server.storage.report_rows import EVERYTHING, ROWS_OF_DOCUMENTS_BYTES, PendingRows
from fhir_server.storage.store import ResourceStore

Pipeline = list[dict[str, Any]]
Documents = list[tuple[str, Any]]


def without_search_values(documents: Documents) -> Documents:
    def stripped(document: Any) -> dict[str, Any]:
        plain = bson.decode(document.raw) if isinstance(document, RawBSONDocument) else dict(document)
        return {key: value for key, value in plain.items() if key != "sp"}
    return [(collection, stripped(document)) for collection, document in documents]


VARIANTS: dict[str, Callable[[str, Documents], Pipeline]] = {
    "from the documents (now)": lambda patient, docs: rows_of_documents([patient], may_make_a_row(docs)),
    "from every document": lambda patient, docs: rows_of_documents([patient], docs),
    "from the documents, no sp": lambda patient, docs: rows_of_documents([patient], without_search_values(docs)),
    "the pipeline, no documents": lambda patient, docs: rows_of_documents([patient], []),
    "from the collections": lambda patient, docs: rows_in_transaction([patient]),
    "a trivial $documents": lambda patient, docs: [{"$documents": [{"a": 1}]}],
}


def may_make_a_row(documents: Documents) -> Documents:
    return [(collection, document) for collection, document in documents
            if ROW_DEFINITION.may_make_a_row(collection, document)]


async def written(store: ResourceStore, bundles: list[Bundle]) -> list[tuple[str, Documents]]:
    """Each Bundle stored in a transaction; its Patient's id and the documents its row is made of."""
    out: list[tuple[str, Documents]] = []
    for writes in bundles:
        pending: list[PendingRows] = []

        async def apply(session: Any, writes: Bundle = writes, pending: list[PendingRows] = pending) -> None:
            pending.append(await store.apply(RequestContext.system(), writes, session))

        await store.run_transaction(apply)
        patient = next(w.id for w in writes if w.type == "Patient")
        groups, _ = pending[-1].made_here({patient}, ROWS_OF_DOCUMENTS_BYTES)
        out.append((patient, groups[0]))
    return out


async def measure(uri: str, pid: int, patients: int, rounds: int) -> None:
    store = ResourceStore.open(uri, f"bench_rows_{uuid.uuid4().hex[:6]}")
    store.report_rows.keep(ROW_DEFINITION)
    bundles = stored_documents(make_bundles(patients, seed=2008), resolve_references=True)
    kinds = sorted({w.type for ws in bundles for w in ws})
    await store.ensure_indexes(search_indexes(SearchParameterRegistry.load_default()), eager=kinds)
    rows = await written(store, bundles)
    print(f"{patients} patients; mongod CPU and wall ms per row, per round:")
    for name, pipeline_of in VARIANTS.items():
        figures = []
        for _ in range(rounds):
            cpu, wall = cpu_seconds(pid), time.perf_counter()
            for patient, documents in rows:
                cursor = await store._db.aggregate(guarded_documents(pipeline_of(patient, documents), EVERYTHING))
                _ = [row async for row in cursor]
            figures.append(f"{1000 * (cpu_seconds(pid) - cpu) / patients:5.2f} "
                           f"({1000 * (time.perf_counter() - wall) / patients:5.2f})")
        print(f"  {name:<28} " + "  ".join(figures))
    await store._db.client.drop_database(store._db.name)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with temporary_node(cache_gb=0.5, prefix="ifp-bench-") as node:
        assert node.process is not None, "temporary_node returns a started mongod"
        asyncio.run(measure(node.uri, node.process.pid, args.patients, args.rounds))


if __name__ == "__main__":
    main()
