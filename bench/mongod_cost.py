"""Where a write's mongod CPU goes (issue #14): the same stored documents written several ways, mongod's CPU
seconds per resource for each, from ``/proc/<mongod>/stat``.

The documents are ``bench/ingest.py``'s (registry Bundles, ids assigned, references resolved to ``Type/id`` as the
server stores them (since 2026-12-07; before, ``urn:uuid`` as sent), ``sp`` extracted), 8 concurrent
clients, one snapshot/majority transaction per Bundle, each variant into a fresh database of one private mongod,
the variants interleaved ``--rounds`` times so that they see the same load of a shared machine:

* ``raw``: one ``insert_many`` per collection, current and history, no index but ``_id`` (ingest's raw side);
* ``raw+current-only``: the same without the history document (what a history of superseded versions only
  would save on a create);
* ``indexed``: ``raw`` into collections with the server's indexes (``SearchParameterRegistry.index_specs``: the
  wildcard index on every ``sp`` field but the sort keys, and the compound indexes);
* ``indexed-wildcard-narrowed``: the same with a narrower wildcard index (see :func:`narrowed`);
* ``indexed-history-id-only`` and ``indexed-current-only``: what history's five indexes, and the history
  document itself, cost on top of the indexed current document;
* ``indexed-no-wildcard``, ``indexed-wildcard-only``: the compound indexes alone, the wildcard index alone
  (``ensure_indexes`` always adds ``lastUpdated,_id`` and ``center,_id``);
* ``store.apply``: ``ResourceStore.apply`` (the server's write: centers, current, history) on those indexes;
* ``+claims``: ``apply`` with each entry's conditional-create claim (one upsert each);
* ``+lookups``: and the ``ifNoneExist`` lookups first, one ``find_each`` per type (a transaction Bundle before
  issue #14);
* ``+lookups in one command``: the same lookups in one ``find_each_of_types``;
* ``+rows from collections`` and ``+rows from documents``: and the report rows of the Bundle's Patient, made
  from the collections (five ``$lookup``s) or from the Bundle's own documents (a transaction Bundle now).

    .venv/bin/python bench/mongod_cost.py --patients 300 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import make_bundles, run_clients, stored_documents
from fhir_server.bootstrap import search_indexes
from fhir_server.context import RequestContext
from fhir_server.reports.pipeline import ROW_DEFINITION
from fhir_server.search import SearchParameterRegistry
from fhir_server.search.registry import WILDCARD
from fhir_server.storage.documents import HISTORY, ResourceWrite
from fhir_server.storage.mongod import temporary_node
from fhir_server.storage.store import DbSession, IndexSpecs, ResourceStore

TICKS = os.sysconf("SC_CLK_TCK")
IDENTIFIER_SYSTEM = "https://cml-registry.eu/fhir/sid/record"
Bundle = list[ResourceWrite]
Write = Callable[[ResourceStore, DbSession, Bundle], Awaitable[None]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# Per parameter type, the entry fields that qualify a value and never select on their own.
QUALIFIERS = {"token": ("s", "ty.s"), "quantity": ("s", "c", "u"), "number": ("s", "c", "u"), "reference": ("t",)}


def narrowed(specs: IndexSpecs, registry: SearchParameterRegistry) -> IndexSpecs:
    """Experiment (measured, not kept): the wildcard index without the fields a compound index leads with
    (``sp.identifier.c``, ``sp.code.c``...), the value qualifiers (system, unit, reference type) and ``center``:
    a registry Observation's index keys 68.9 -> 50.4 per insert (``bench/mongod_view.py``)."""
    out: IndexSpecs = {}
    for kind, indexes in specs.items():
        excluded = {keys[0][0] for keys, _ in indexes if list(keys) != WILDCARD and keys[0][0].startswith("sp.")
                    and not keys[0][0].startswith("sp._sort")} | {"center"}
        for param in registry.for_type(kind).values():
            fields = QUALIFIERS.get(param.type, ())
            if param.type == "composite":
                components = [registry.component_param(param, n, kind) for n in range(len(param.components))]
                excluded |= {f"sp.{param.code}.k{n}.{f}" for n, c in enumerate(components) if c is not None
                             for f in QUALIFIERS.get(c.type, ())}
            excluded |= {f"sp.{param.code}.{f}" for f in fields}
        excluded = {p for p in excluded if not any(p.startswith(q + ".") for q in excluded)}
        out[kind] = [(keys, {"wildcardProjection": {**options["wildcardProjection"], **dict.fromkeys(excluded, 0)}}
                      if list(keys) == WILDCARD else options) for keys, options in indexes]
    return out


def without_wildcard(specs: IndexSpecs) -> IndexSpecs:
    return {kind: [(keys, options) for keys, options in indexes if list(keys) != WILDCARD]
            for kind, indexes in specs.items()}


def wildcard_only(specs: IndexSpecs) -> IndexSpecs:
    return {kind: [(keys, options) for keys, options in indexes if list(keys) == WILDCARD]
            for kind, indexes in specs.items()}


def sp_wildcard(specs: IndexSpecs) -> IndexSpecs:
    """Experiment: the wildcard index as ``sp.$**`` without a projection (``_sort`` included)."""
    return {kind: [([("sp.$**", 1)], {}) if list(keys) == WILDCARD else (keys, options) for keys, options in indexes]
            for kind, indexes in specs.items()}


async def raw(store: ResourceStore, session: DbSession, writes: Bundle, *, history: bool = True) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append(write.current_document(None))
    for kind, docs in by_type.items():
        await store._collection(kind).insert_many(docs, session=session)
    if history:
        await store._collection(HISTORY).insert_many([w.history_document(None) for w in writes], session=session)


async def current_only(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    await raw(store, session, writes, history=False)


async def bare_history(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    """``raw`` into the indexed collections, history with its ``_id`` index only (see ``run_variant``)."""
    await raw(store, session, writes)


async def apply(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    await store.apply(RequestContext.system(), writes, session)


def claims_of(writes: Bundle) -> list[tuple[str, str]]:
    return [(f"{w.type}?identifier={IDENTIFIER_SYSTEM}|{w.id}", f"{w.type}/{w.id}") for w in writes]


async def apply_with_claims(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    await store.apply(RequestContext.system(), writes, session, claims_of(writes))


async def lookups_then_apply(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append({"sp.identifier": {"$elemMatch": {"c": write.id, "s": IDENTIFIER_SYSTEM}}})
    for kind, queries in by_type.items():
        await store.find_each(RequestContext.system(), kind, queries, limit=2, session=session)
    await apply_with_claims(store, session, writes)


async def run_variant(uri: str, pid: int, specs: IndexSpecs | None, write: Write, bundles: list[Bundle]) -> float:
    store = ResourceStore.open(uri, f"bench_cost_{uuid.uuid4().hex[:6]}")
    if write in (rows_from_collections, rows_from_documents):
        store.report_rows.keep(ROW_DEFINITION)
    kinds = sorted({w.type for ws in bundles for w in ws})
    await store.ensure_indexes(specs or {kind: [] for kind in kinds}, eager=kinds)
    if specs is None:  # raw: no index but _id
        for kind in [*kinds, HISTORY]:
            await store._collection(kind).drop_indexes()
    if write is bare_history:
        await store._collection(HISTORY).drop_indexes()

    async def one(writes: Bundle) -> None:
        await store.run_transaction(lambda session: write(store, session, writes))

    before = cpu_seconds(pid)
    await run_clients(bundles, 8, one)
    spent = cpu_seconds(pid) - before
    await store._db.client.drop_database(store._db.name)
    await store.close()
    return spent


async def or_find_then_apply(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    """Experiment: the union of the lookups as one plain find (no ``$facet``)."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append({"sp.identifier": {"$elemMatch": {"c": write.id, "s": IDENTIFIER_SYSTEM}}})
    for kind, queries in by_type.items():
        await store.find(RequestContext.system(), kind, {"$or": queries} if len(queries) > 1 else queries[0],
                         projection={"sp": 0}, session=session)
    await apply_with_claims(store, session, writes)


async def in_find_then_apply(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    """Experiment: the lookups of one system as one ``$in`` on the codes."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append(write.id)
    for kind, codes in by_type.items():
        await store.find(RequestContext.system(), kind,
                         {"sp.identifier": {"$elemMatch": {"c": {"$in": codes}, "s": IDENTIFIER_SYSTEM}}},
                         projection={"sp": 0}, session=session)
    await apply_with_claims(store, session, writes)


async def one_command_lookups_then_apply(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    """The lookups of every type in one command (``ResourceStore.find_each_of_types``)."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append({"sp.identifier": {"$elemMatch": {"c": write.id, "s": IDENTIFIER_SYSTEM}}})
    await store.find_each_of_types(RequestContext.system(), by_type, limit=2, session=session)
    await apply_with_claims(store, session, writes)


async def lookups_apply_rows(store: ResourceStore, session: DbSession, writes: Bundle, *,
                             from_documents: bool) -> None:
    """A transaction Bundle now: the lookups in one command, ``apply`` with claims, then the report rows
    (``ReportRows.refresh``), of its new Patient made from the collections' or from the Bundle's documents."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        by_type[write.type].append({"sp.identifier": {"$elemMatch": {"c": write.id, "s": IDENTIFIER_SYSTEM}}})
    await store.find_each_of_types(RequestContext.system(), by_type, limit=2, session=session)
    pending = await store.apply(RequestContext.system(), writes, session, claims_of(writes))
    minted = {w.id for w in writes if w.type == "Patient"} if from_documents else set()
    await store.report_rows.refresh(pending, session, minted)


async def rows_from_collections(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    await lookups_apply_rows(store, session, writes, from_documents=False)


async def rows_from_documents(store: ResourceStore, session: DbSession, writes: Bundle) -> None:
    await lookups_apply_rows(store, session, writes, from_documents=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated variant names")
    args = parser.parse_args()
    registry = SearchParameterRegistry.load_default()
    specs = search_indexes(registry)
    only = set(args.only.split(",")) if args.only else None
    variants: list[tuple[str, IndexSpecs | None, Write]] = [
        ("raw", None, raw), ("raw+current-only", None, current_only),
        ("indexed", specs, raw), ("indexed-wildcard-narrowed", narrowed(specs, registry), raw),
        ("indexed-history-id-only", specs, bare_history),
        ("indexed-no-wildcard", without_wildcard(specs), raw), ("indexed-wildcard-only", wildcard_only(specs), raw),
        ("indexed-sp-wildcard", sp_wildcard(specs), raw), ("indexed-current-only", specs, current_only),
        ("store.apply", specs, apply), ("+claims", specs, apply_with_claims), ("+lookups", specs, lookups_then_apply),
        ("+lookups as $or find", specs, or_find_then_apply), ("+lookups as $in find", specs, in_find_then_apply),
        ("+lookups in one command", specs, one_command_lookups_then_apply),
        ("+rows from collections", specs, rows_from_collections),
        ("+rows from documents", specs, rows_from_documents),
    ]
    variants = [v for v in variants if only is None or v[0] in only]
    results: dict[str, list[float]] = defaultdict(list)
    with temporary_node(cache_gb=2.0, prefix="ifp-bench-") as node:
        assert node.process is not None, "temporary_node returns a started mongod"
        for _ in range(args.rounds):
            for name, indexes, write in variants:
                bundles = stored_documents(make_bundles(args.patients, seed=2008), resolve_references=True)  # fresh ids
                resources = sum(len(b) for b in bundles)
                results[name].append(asyncio.run(run_variant(node.uri, node.process.pid, indexes, write, bundles)))
    print(f"{args.patients} patients, {resources} resources, 8 clients; mongod CPU ms per resource, per round:")
    for name, spent in results.items():
        print(f"  {name:<22} " + "  ".join(f"{1000 * s / resources:.3f}" for s in spent))


if __name__ == "__main__":
    main()
