"""Search benchmark (issue #3, item 7): p50/p95 latency over HTTP beside a hand-written PyMongo query.

Loads N synthetic registry patients (``tests.synthetic.registry_cohort``; 10,000 patients are about
153,000 resources) *directly with PyMongo*, as the server would store them: each transaction Bundle's
``urn:uuid`` references rewritten to ``Type/id``, the shared center created once (its conditional create),
``meta`` stamped as the server does, ``sp`` from ``extract_index_values``, one history document per resource,
then the server's indexes (``SearchParameterRegistry.index_specs``) built once. Then it starts the server
(``fhir-server serve``, 2 uvicorn workers) on that database and times each query, one request at a time:

* server: ``GET`` over HTTP (httpx, keep-alive), the whole searchset Bundle read by the client;
* PyMongo: a hand-written query on the same collections and ``sp`` fields, what a developer would write for
  the same question (same codec options as the server, documents materialised), in the same run, in
  alternating blocks of 25 requests, so that both see the same load of the (shared) machine. The same
  question includes the Bundle's ``total``: a search without ``_total`` is counted by the server up to its
  ``total_budget`` (``interactions/search.py``), so the hand-written side of those rows counts the same way
  (``count_documents(limit=budget + 1)``); the ``_total=none`` rows (a-), (d-) compare the page alone.

    .venv/bin/python bench/search.py --patients 10000 --repeat 200

``--compare-auth`` (issue #11 item 14): two servers on the same database, the default settings (tokens + audit
trail) and ``FHIR_AUTH_MODE=none`` + ``FHIR_AUDIT_ENABLED=false``, each query against both in alternating blocks of
25 requests; prints p50/p95 of both and the cost in % (no hand-written side). With ``--audit off`` the first server
has tokens but no audit trail: what the tokens alone cost.

``--rows a,d,d-`` times only those rows (the tag in each row's parentheses). ``--extract`` only runs the
index-extraction micro-benchmark (µs per resource over registry_cohort(200)).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    AuthCost,
    Server,
    add_auth_argument,
    fhir_server,
    guarded_and_plain,
    guarded_label,
    mongod,
    percentiles,
)
from fhir_server.bootstrap import search_indexes
from fhir_server.interactions.versioning import stamp
from fhir_server.permissions import Role
from fhir_server.search import SearchParameterRegistry, extract_index_values
from fhir_server.settings import Settings
from fhir_server.storage.centers import Version, assign
from fhir_server.storage.client import CODEC_OPTIONS
from fhir_server.storage.documents import HISTORY, ResourceWrite
from fhir_server.storage.store import ResourceStore
from tests.synthetic import registry_cohort

B = "https://cml-registry.eu/fhir"
LOINC = "http://loinc.org"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"
REASONS = f"{B}/CodeSystem/ifp-registration-reason"
PSEUDONYM = f"{B}/sid/patient"
TOTAL_BUDGET = Settings().total_budget  # the server runs with the default settings


# -- loading -------------------------------------------------------------------------------------------------


def stored_writes(patients: int, registry: SearchParameterRegistry) -> tuple[list[ResourceWrite], list[str]]:
    """The versions the server would store for ``patients`` transaction Bundles; and the pseudonyms."""
    writes: list[ResourceWrite] = []
    centers: dict[str, str] = {}  # ifNoneExist criteria -> id (conditional create of the shared center)
    pseudonyms: list[str] = []
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n, (bundle, _facts) in enumerate(registry_cohort(patients)):
        ids: dict[str, str] = {}
        entries = []
        for entry in bundle["entry"]:
            resource, request = entry["resource"], entry["request"]
            kind = resource["resourceType"]
            if kind == "Organization" and request.get("ifNoneExist") in centers:
                ids[entry["fullUrl"]] = f"Organization/{centers[request['ifNoneExist']]}"
                continue
            ident = str(uuid.UUID(int=random.Random(f"{n}/{entry['fullUrl']}").getrandbits(128), version=4))
            ids[entry["fullUrl"]] = f"{kind}/{ident}"
            if kind == "Organization":
                centers[request["ifNoneExist"]] = ident
            if kind == "Patient":
                pseudonyms.append(resource["identifier"][0]["value"])
            entries.append((ident, resource))
        last_updated = at + timedelta(seconds=n)
        for ident, resource in entries:
            rewritten = _rewrite(resource, ids)
            stored = stamp(rewritten, ident, 1, last_updated)
            writes.append(ResourceWrite(stored["resourceType"], ident, 1, last_updated, "POST", stored,
                                        extract_index_values(registry, stored)))
    return writes, pseudonyms


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def stored_centers(writes: list[ResourceWrite]) -> list[str | None]:
    """The center each write is stored with, by the rules the server applies to an admin's writes."""
    versions = [Version(w.type, w.id, w.resource, created=True) for w in writes]
    return assign(Role.SYSTEM, None, versions, {})


def load(uri: str, db_name: str, writes: list[ResourceWrite]) -> None:
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
    db = client[db_name]
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    centers = stored_centers(writes)
    for write, center in zip(writes, centers, strict=True):
        by_type[write.type].append(write.current_document(center))
    for kind, docs in by_type.items():
        for start in range(0, len(docs), 5000):
            db[kind].insert_many(docs[start:start + 5000], ordered=False)
    history = [w.history_document(center) for w, center in zip(writes, centers, strict=True)]
    for start in range(0, len(history), 5000):
        db[HISTORY].insert_many(history[start:start + 5000], ordered=False)
    client.close()


async def build_indexes(uri: str, db_name: str, registry: SearchParameterRegistry) -> None:
    store = ResourceStore.open(uri, db_name)
    try:
        await store.ensure_indexes(search_indexes(registry))
    finally:
        await store.close()


# -- queries -------------------------------------------------------------------------------------------------


class Queries:
    """Each benchmark query: the FHIR search (path + query) and the hand-written PyMongo equivalent."""

    def __init__(self, db: Any, pseudonyms: list[str], seed: int) -> None:
        self.db = db
        self.pseudonyms = pseudonyms
        self.rng = random.Random(seed)

    def pick(self) -> str:
        return self.rng.choice(self.pseudonyms)

    def cases(self) -> list[tuple[str, Callable[[], str], Callable[[], int]]]:
        db = self.db
        project = {"resource": 1}

        token_query = {"sp.code": {"$elemMatch": {"s": LOINC, "c": "777-3"}}}

        def token_http() -> str:
            return f"Observation?code={LOINC}|777-3&_count=100"

        def token_raw() -> int:
            return len(list(db.Observation.find(token_query, project).sort("_id", 1).limit(100)))

        def budgeted_raw() -> int:
            # the server's default: count at most budget + 1 matches (concurrently with the page there)
            db.Observation.count_documents(token_query, limit=TOTAL_BUDGET + 1)
            return token_raw()

        def no_total_http() -> str:
            return token_http() + "&_total=none"

        chained_value = {"p": ""}

        def chained_http() -> str:
            chained_value["p"] = self.pick()
            return f"Observation?subject:Patient.identifier={PSEUDONYM}|{chained_value['p']}&_count=100"

        def chained_raw() -> int:
            patient = db.Patient.find_one({"sp.identifier": {"$elemMatch": {"s": PSEUDONYM, "c": self.pick()}}},
                                          {"_id": 1})
            query = {"sp.subject.r": f"Patient/{patient['_id']}"}
            db.Observation.count_documents(query, limit=TOTAL_BUDGET + 1)
            return len(list(db.Observation.find(query, project).sort("_id", 1).limit(100)))

        def has_http() -> str:
            return f"Patient?_has:Observation:subject:value-concept={REASONS}|toxicity&_count=100"

        has_query = {"sp.value-concept": {"$elemMatch": {"s": REASONS, "c": "toxicity"}},
                     "sp._sort.subject.a": {"$gt": "Patient/", "$lt": "Patient0"}}

        def first_subjects(wanted: int) -> list[str]:
            # the best plain query on this layout: Observation.subject holds one reference, so its sort key
            # ``sp._sort.subject.a`` is it, and the (value-concept, subject order) index gives the first
            # ``wanted`` distinct Patients without reading the other matches (bench/README.md, "`_has` at scale")
            ids: list[str] = []
            with db.Observation.find(has_query, {"_id": 0, "sp._sort.subject.a": 1}).sort(
                    "sp._sort.subject.a", 1).batch_size(wanted) as cursor:
                for doc in cursor:
                    ident = doc["sp"]["_sort"]["subject"]["a"].partition("/")[2]
                    if not ids or ids[-1] != ident:
                        ids.append(ident)
                    if len(ids) == wanted:
                        break
            return ids

        def has_raw() -> int:
            db.Patient.count_documents({"_id": {"$in": first_subjects(TOTAL_BUDGET + 1)}}, limit=TOTAL_BUDGET + 1)
            return len(list(db.Patient.find({"_id": {"$in": first_subjects(101)}}, project).sort("_id", 1)
                            .limit(100)))

        def include_http() -> str:
            return f"Observation?code={CONCEPTS}|registration-reason&_include=Observation:subject&_count=100"

        include_query = {"sp.code": {"$elemMatch": {"s": CONCEPTS, "c": "registration-reason"}}}

        def include_page_raw() -> int:
            found = list(db.Observation.find(include_query, {"resource": 1, "sp.subject": 1}).sort("_id", 1)
                         .limit(100))
            ids = sorted({e["i"] for d in found for e in d["sp"].get("subject", ())})
            return len(found) + len(list(db.Patient.find({"_id": {"$in": ids}}, project)))

        def include_raw() -> int:
            db.Observation.count_documents(include_query, limit=TOTAL_BUDGET + 1)
            return include_page_raw()

        def include_no_total_http() -> str:
            return include_http() + "&_total=none"

        def date_http() -> str:
            return (f"Observation?code={CONCEPTS}|registration-reason&date=ge2005-01-01&date=lt2006-01-01"
                    "&_sort=-date&_count=100")

        def date_raw() -> int:
            # What a developer who read the plan writes: the entry in 2005, plus the bounds it implies on the
            # stored scalar sort keys (the largest end after 2005-01-01, the smallest start before 2006), sorted
            # in the order of the index (code, sort keys, _id). Without those bounds MongoDB answers from the
            # wildcard index and sorts every registration in memory (2-3 s at 100,000 patients), which measured
            # the planner, not the question, and left mongod's cache full of that scan (bench/README.md).
            start, end = datetime(2005, 1, 1, tzinfo=UTC), datetime(2006, 1, 1, tzinfo=UTC)
            query = {"sp.code": {"$elemMatch": {"s": CONCEPTS, "c": "registration-reason"}},
                     "sp.date": {"$elemMatch": {"lo": {"$gte": start}, "hi": {"$lte": end}}},
                     "sp._sort.date.d": {"$gt": start}, "sp._sort.date.a": {"$lt": end}}
            db.Observation.count_documents(query, limit=TOTAL_BUDGET + 1)
            newest_first = [("sp._sort.date.d", -1), ("sp._sort.date.a", -1), ("_id", -1)]
            return len(list(db.Observation.find(query, project).sort(newest_first).limit(100)))

        def total_http() -> str:
            return token_http() + "&_total=accurate"

        def total_raw() -> int:
            db.Observation.count_documents(token_query)
            return token_raw()

        def floor_http() -> str:
            return "Patient?_id=no-such-id"

        def floor_raw() -> int:
            return len(list(db.Patient.find({"_id": "no-such-id"}, project)))

        return [
            ("(0) floor: _id of no resource (HTTP + 1 query)", floor_http, floor_raw),
            ("(a) token, _count=100 (budgeted total)", token_http, budgeted_raw),
            ("(a-) the same with _total=none", no_total_http, token_raw),
            ("(a+) the same with _total=accurate", total_http, total_raw),
            ("(b) chained subject:Patient.identifier", chained_http, chained_raw),
            ("(c) _has:Observation:subject:value-concept", has_http, has_raw),
            ("(d) _include=Observation:subject", include_http, include_raw),
            ("(d-) the same with _total=none", include_no_total_http, include_page_raw),
            ("(e) date range + _sort=-date", date_http, date_raw),
        ]


def http_url(base: str, path_and_query: str) -> str:
    path, _, query = path_and_query.partition("?")
    return f"{base}/{path}?" + "&".join(f"{k}={quote(v, safe=':|/,$')}" for k, _, v in
                                        (p.partition("=") for p in query.split("&")))


def time_pairs(http: httpx.Client, base: str, make: Callable[[], str], raw: Callable[[], int],
               repeat: int, block: int = 25) -> tuple[list[float], list[float], int, int]:
    """Alternate blocks of ``block`` server requests and ``block`` hand-written queries, so that both see the
    same drift of the (shared) machine's load, without one timing the other's leftover work."""
    server: list[float] = []
    hand: list[float] = []
    rows = hand_rows = 0
    while len(server) < repeat:
        for _ in range(min(block, repeat - len(server))):
            url = http_url(base, make())
            start = time.perf_counter()
            r = http.get(url)
            body = r.json()
            server.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            rows = sum(1 for e in body.get("entry", []) if e["search"]["mode"] in ("match", "include"))
        for _ in range(min(block, repeat - len(hand))):
            start = time.perf_counter()
            hand_rows = raw()
            hand.append((time.perf_counter() - start) * 1000)
    return server, hand, rows, hand_rows


def bench_queries(uri: str, db_name: str, server: Server, pseudonyms: list[str], repeat: int, seed: int,
                  only: str | None = None) -> None:
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
    queries = Queries(client[db_name], pseudonyms, seed)
    base = server.base
    print(f"server {'with tokens' if server.auth else 'with FHIR_AUTH_MODE=none'}")
    print(f"{'query':44} {'server p50':>10} {'p95':>7}   {'pymongo p50':>11} {'p95':>7}   {'p95 ratio':>9}  rows")
    with httpx.Client(timeout=60, headers={"Accept": "application/fhir+json"}, auth=server.auth) as http:
        for name, make, raw in queries.cases():
            if only and name[1:name.index(")")] not in only.split(","):
                continue
            time_pairs(http, base, make, raw, max(5, repeat // 10))  # warm-up
            served, hand, rows, hand_rows = time_pairs(http, base, make, raw, repeat)
            (s50, s95), (h50, h95) = percentiles(served), percentiles(hand)
            print(f"{name:44} {s50:8.1f}ms {s95:5.1f}ms   {h50:9.1f}ms {h95:5.1f}ms   {s95 / h95:8.1f}x  "
                  f"{rows}/{hand_rows}")
    client.close()


def time_alternating(clients: list[tuple[httpx.Client, str]], make: Callable[[], str], repeat: int,
                     block: int = 25) -> list[list[float]]:
    """ms per request of each (client, base): alternating blocks of ``block`` requests, ``repeat`` each."""
    samples: list[list[float]] = [[] for _ in clients]
    while len(samples[-1]) < repeat:
        for (http, base), times in zip(clients, samples, strict=True):
            for _ in range(min(block, repeat - len(times))):
                url = http_url(base, make())
                start = time.perf_counter()
                r = http.get(url)
                r.json()
                times.append((time.perf_counter() - start) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return samples


def bench_compare(uri: str, db_name: str, guarded: Server, plain: Server, pseudonyms: list[str], repeat: int,
                  seed: int, only: str | None = None, label: str = "tokens + audit trail") -> None:
    """Each query against both servers of ``--compare-auth``, interleaved; p50/p95 of both and the cost."""
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, type_registry=CODEC_OPTIONS.type_registry)
    queries = Queries(client[db_name], pseudonyms, seed)
    print(f"one run: {label} vs FHIR_AUTH_MODE=none + FHIR_AUDIT_ENABLED=false")
    print(f"{'query':44} {'guarded p50':>11} {'p95':>7}   {'plain p50':>9} {'p95':>7}   {'cost p50':>8} {'p95':>6}")
    headers = {"Accept": "application/fhir+json"}
    with httpx.Client(timeout=60, headers=headers, auth=guarded.auth) as with_tokens, \
            httpx.Client(timeout=60, headers=headers) as without:
        pair = [(with_tokens, guarded.base), (without, plain.base)]
        for name, make, _raw in queries.cases():
            if only and name[1:name.index(")")] not in only.split(","):
                continue
            time_alternating(pair, make, max(5, repeat // 10))  # warm-up
            result = AuthCost.of(*time_alternating(pair, make, repeat))
            (g50, g95), (p50, p95), (c50, c95) = result.guarded, result.plain, result.cost
            print(f"{name:44} {g50:9.1f}ms {g95:5.1f}ms   {p50:7.1f}ms {p95:5.1f}ms   {c50:+7.0f}% {c95:+5.0f}%")
    client.close()


def serve_and_bench(uri: str, db_name: str, args: argparse.Namespace, pseudonyms: list[str]) -> None:
    """The server(s) of ``args`` on ``db_name`` and the queries against them."""
    if args.compare_auth:
        with guarded_and_plain(uri, db_name, args.workers, audit=args.audit == "on") as (guarded, plain):
            bench_compare(uri, db_name, guarded, plain, pseudonyms, args.repeat, args.seed, args.rows,
                          guarded_label(args))
        return
    with fhir_server(uri, db_name, args.workers, auth=args.auth) as server:
        bench_queries(uri, db_name, server, pseudonyms, args.repeat, args.seed, args.rows)


# -- extraction micro-benchmark --------------------------------------------------------------------------------


def bench_extract(patients: int = 200, rounds: int = 7) -> None:
    """µs per resource of ``extract_index_values`` (best of ``rounds``), overall and per type."""
    registry = SearchParameterRegistry.load_default()
    resources = [e["resource"] for bundle, _ in registry_cohort(patients) for e in bundle["entry"]]
    for resource in resources:
        extract_index_values(registry, resource)  # compile the plans

    def best(items: list[dict[str, Any]]) -> float:
        fastest = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for resource in items:
                extract_index_values(registry, resource)
            fastest = min(fastest, time.perf_counter() - start)
        return fastest / len(items) * 1e6

    kinds = Counter(r["resourceType"] for r in resources)
    print(f"extract_index_values over registry_cohort({patients}): {len(resources)} resources, "
          f"{best(resources):.0f} µs per resource (best of {rounds})")
    for kind in kinds:
        print(f"  {kind:20} {kinds[kind]:6} {best([r for r in resources if r['resourceType'] == kind]):6.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200, help="requests per query")
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn workers of the server (default: the server's own, FHIR_WORKERS: the CPU count)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--extract", action="store_true", help="only the extraction micro-benchmark")
    parser.add_argument("--rows", help="only these rows, by tag, comma-separated (e.g. a,d,d-)")
    parser.add_argument("--db", help="with FHIR_MONGODB_URI: use (and keep) this database, loading it if empty")
    add_auth_argument(parser)
    args = parser.parse_args()
    if args.extract:
        bench_extract()
        return
    if args.db:
        reuse(args)
        return
    registry = SearchParameterRegistry.load_default()
    started = time.perf_counter()
    writes, pseudonyms = stored_writes(args.patients, registry)
    prepared = time.perf_counter()
    kinds = Counter(w.type for w in writes)
    print(f"{args.patients} patients, {len(writes)} resources ({dict(kinds)}); {os.cpu_count()} cores")
    print(f"prepared (synthetic + stamp + extract) in {prepared - started:.0f} s")
    with mongod() as uri:
        db_name = f"bench_search_{uuid.uuid4().hex[:6]}"
        load(uri, db_name, writes)
        loaded = time.perf_counter()
        asyncio.run(build_indexes(uri, db_name, registry))
        indexed = time.perf_counter()
        print(f"loaded with PyMongo in {loaded - prepared:.0f} s, indexes built in {indexed - loaded:.0f} s")
        del writes
        try:
            serve_and_bench(uri, db_name, args, pseudonyms)
        finally:
            MongoClient(uri).drop_database(db_name)


def reuse(args: argparse.Namespace) -> None:
    """Benchmark against a kept database (for iterating on the server), loading it first if it is empty."""
    uri = os.environ["FHIR_MONGODB_URI"]
    client: MongoClient[Any] = MongoClient(uri)
    if client[args.db]["Patient"].estimated_document_count() == 0:
        registry = SearchParameterRegistry.load_default()
        writes, _ = stored_writes(args.patients, registry)
        load(uri, args.db, writes)
        asyncio.run(build_indexes(uri, args.db, registry))
    pseudonyms = client[args.db]["Patient"].distinct("resource.identifier.value")
    client.close()
    serve_and_bench(uri, args.db, args, pseudonyms)


if __name__ == "__main__":
    main()
