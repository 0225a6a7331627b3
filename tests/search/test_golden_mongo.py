"""Run the golden search table (``golden_search.py``) on a real mongod with the compiled filters.

Documents are stored in the server's shape (``_id``, ``vid``, ``lastUpdated``, ``deleted``, ``resource``,
``sp``) in collections named after the type, with the registry's indexes created first (so that an index
MongoDB refuses, e.g. on parallel arrays, fails here). The small executor below shows how the I/O side uses
the pure plans: chains, ``_has``, sort and keyset pages.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from fhir_server.search.compile import CompiledSearch, compile_search
from fhir_server.search.extract import extract_index_values
from fhir_server.search.paging import after_filter, decode_page_token, encode_page_token, sort_values
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage.mongod import LocalMongod, free_port
from tests.search.golden_search import CASES, LOINC, RESOURCES, Case, q

REGISTRY = SearchParameterRegistry.load_default()
SECRET = b"test-secret"


@pytest.fixture(scope="module")
def search_db() -> Iterator[Database[Any]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ifp-search-golden-"))
    mongod = LocalMongod(data_dir, free_port(), cache_gb=0.25)
    try:
        mongod.start(timeout=120)
        with MongoClient(mongod.uri, tz_aware=True) as client:
            db: Database[Any] = client["golden"]
            _load(db)
            yield db
    finally:
        mongod.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _load(db: Database[Any]) -> None:
    for resource_type in {r["resourceType"] for r, _ in RESOURCES}:
        for spec in REGISTRY.index_specs(resource_type):
            db[resource_type].create_index(spec, **REGISTRY.index_options(spec))
    for resource, last_updated in RESOURCES:
        doc = {
            "_id": resource["id"],
            "vid": 1,
            "lastUpdated": last_updated,
            "deleted": False,
            "sp": extract_index_values(REGISTRY, resource),
        }
        db[resource["resourceType"]].insert_one(doc)


def _matching_ids(db: Database[Any], compiled: CompiledSearch) -> list[str]:
    """Resolve joins (chains, _has) then run the filter; returns ids in sort order."""
    return [d["_id"] for d in db[str(compiled.resource_type)].find(_full_filter(db, compiled), sort=compiled.sort)]


def _full_filter(db: Database[Any], compiled: CompiledSearch) -> dict[str, Any]:
    terms = [compiled.filter, {"deleted": False}]
    for chain in compiled.chains:
        ids = {kind: _matching_ids(db, inner) for kind, inner in chain.targets}
        terms.append(chain.join_filter(ids))
    for has in compiled.has:
        inner_filter = _full_filter(db, has.inner)
        docs = db[has.source_type].find(inner_filter, projection=has.projection)
        terms.append(has.join_filter(has.referenced_ids(docs)))
    return {"$and": [t for t in terms if t]}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_golden_search(search_db: Database[Any], case: Case) -> None:
    _name, resource_type, query, expected, ordered = case
    parsed = parse_search(REGISTRY, resource_type, query, strict=True)
    found = _matching_ids(search_db, compile_search(parsed, registry=REGISTRY))
    if ordered:
        assert found == expected
    else:
        assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("sort", ["date", "-date", "-_lastUpdated", "status,-date", "-value-quantity"])
def test_keyset_pages_return_every_row_once_in_order(search_db: Database[Any], sort: str) -> None:
    compiled = compile_search(parse_search(REGISTRY, "Observation", q(f"_sort={sort}"), strict=True))
    everything = _matching_ids(search_db, compiled)
    pages: list[str] = []
    token: str | None = None
    while True:
        terms = [_full_filter(search_db, compiled)]
        if token is not None:
            values, _meta = decode_page_token(token, compiled.sort, secret=SECRET)
            terms.append(after_filter(compiled.sort, values))
        rows = list(search_db["Observation"].find({"$and": terms}, sort=compiled.sort, limit=2))
        pages.extend(r["_id"] for r in rows)
        if len(rows) < 2:
            break
        token = encode_page_token(sort_values(rows[-1], compiled.sort), compiled.sort, secret=SECRET)
    assert pages == everything
    assert len(everything) == 5


def test_include_targets_and_revinclude_filter_find_the_related_documents(search_db: Database[Any]) -> None:
    parsed = parse_search(
        REGISTRY,
        "Observation",
        q("_id=o1,o4&_include=Observation:patient&_revinclude=Observation:has-member"),
        strict=True,
    )
    compiled = compile_search(parsed, registry=REGISTRY)
    docs = list(search_db["Observation"].find(_full_filter(search_db, compiled)))
    include, revinclude = compiled.includes
    assert sorted(t for d in docs for t in include.targets(d)) == [("Patient", "p1")]
    refs = [f"Observation/{d['_id']}" for d in docs]
    assert list(search_db["Observation"].find(revinclude.reverse_filter(refs))) == []


@pytest.mark.parametrize("query", [f"_has:Observation:patient:code={LOINC}|69380-4", "_has:Observation:subject:code=x"])
def test_has_pipeline_collects_in_mongodb_the_ids_referenced_ids_reads(search_db: Database[Any], query: str) -> None:
    (has,) = compile_search(parse_search(REGISTRY, "Patient", q(query), strict=True)).has
    inner_filter = _full_filter(search_db, has.inner)
    rows = list(search_db[has.source_type].aggregate(has.referenced_ids_pipeline(inner_filter)))
    in_mongodb = set(rows[0]["ids"]) if rows else set()
    assert in_mongodb == has.referenced_ids(search_db[has.source_type].find(inner_filter, projection=has.projection))
    assert in_mongodb == ({"p1", "p2"} if "69380-4" in query else set())


def test_a_document_indexed_before_canonical_units_still_matches_by_its_own_code(search_db: Database[Any]) -> None:
    """Documents stored before UCUM canonical forms were extracted (no ``k`` in their quantity entries) are
    found by their own system and code until ``$reindex`` gives them one."""
    resource = {"resourceType": "Observation", "id": "legacy-quantity", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 7, "system": "http://unitsofmeasure.org", "code": "g/dL"}}
    index = extract_index_values(REGISTRY, resource)
    del index["value-quantity"][0]["k"]
    search_db["Observation"].insert_one({"_id": "legacy-quantity", "vid": 1, "lastUpdated": None, "deleted": False,
                                         "sp": index})
    try:
        for value, expected in (("7|http://unitsofmeasure.org|g/dL", ["legacy-quantity"]),
                                ("70|http://unitsofmeasure.org|g/L", [])):  # converted: needs the reindex
            parsed = parse_search(REGISTRY, "Observation", q(f"value-quantity={value}"), strict=True)
            assert _matching_ids(search_db, compile_search(parsed, registry=REGISTRY)) == expected
    finally:
        search_db["Observation"].delete_one({"_id": "legacy-quantity"})
