"""ResourceStore: every MongoDB read and write goes through this class (and ``storage/``'s other modules);
nothing outside ``storage/`` holds the client or the database.

Reads take a RequestContext and pass through ``AccessPolicy.read_filter`` (the one access checkpoint); they
never return deleted tombstones unless asked for a specific version. Writes are applied inside a
multi-document transaction (snapshot reads, majority writes) run with the driver's retry rules: the whole
callback is re-run on ``TransientTransactionError``, the commit alone on ``UnknownTransactionCommitResult``.
Aggregations are run as :func:`fhir_server.storage.aggregation.guarded` makes them: the access filter in front of
every collection they read. Background jobs live in :mod:`fhir_server.storage.jobs`; counters (the
conformance epoch) and plain read sessions are methods here.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

from fhir_server.context import RequestContext
from fhir_server.errors import Conflict
from fhir_server.storage import report_rows
from fhir_server.storage.access import AccessPolicy, restrict
from fhir_server.storage.aggregation import RESOURCE_COLLECTION, ReadFilters, guarded, guarded_documents
from fhir_server.storage.audit_log import AUDIT_EVENTS, AuditLog
from fhir_server.storage.audit_process import ProcessAuditLog, ProcessIndex, WriterProcess
from fhir_server.storage.centers import UNASSIGNED, Key, Version, needed_keys
from fhir_server.storage.client import CODEC_OPTIONS, MAJORITY, connect
from fhir_server.storage.documents import (
    CLAIMS,
    COUNTERS,
    HISTORY,
    JOBS,
    NOT_DELETED,
    REPORT_ROWS,
    ResourceWrite,
    StoredVersion,
    history_key,
    now_ms,
)
from fhir_server.storage.faults import bounded
from fhir_server.storage.files import FileStore
from fhir_server.storage.jobs import JobStore
from fhir_server.storage.report_rows import PendingRows, ReportRows
from fhir_server.storage.retries import counted
from fhir_server.storage.security_store import SecurityStore
from fhir_server.storage.write_commands import run_writes, upsert

T = TypeVar("T")
# The handle of a transaction (or of a causally consistent read): opaque to the layers above, which name it
# by this alias and never import the driver.
DbSession = AsyncClientSession
Session = DbSession | None
IndexKeys = list[tuple[str, Any]]
# History's one order, newest first, at every level (system, type, instance), and the keyset key of a row in it.
_HISTORY_ORDER: IndexKeys = [("lastUpdated", DESCENDING), ("type", DESCENDING), ("id", DESCENDING),
                             ("vid", DESCENDING)]
_HISTORY_ORDER_AFTER_TYPE = [key for key in _HISTORY_ORDER if key[0] != "type"]  # type history: type first
HistoryKey = tuple[datetime, str, str, int]
Period = tuple[datetime | None, datetime | None]  # [start, end); None: unbounded on that side
_INDEX_NOT_FOUND = 27
_NAMESPACE_EXISTS = 48
# A search index of a resource collection: its keys and its options (e.g. ``wildcardProjection``).
IndexSpecs = dict[str, list[tuple[IndexKeys, dict[str, Any]]]]


class ResourceStore:
    def __init__(self, db: AsyncDatabase, access: AccessPolicy | None = None, *,
                 timeout_seconds: float | None = None) -> None:
        self._db = db
        self.access = access or AccessPolicy()
        # Every read and transaction ends within this (``faults.bounded``): None leaves the driver's defaults.
        self.timeout_seconds = timeout_seconds
        self._collections: dict[str, AsyncCollection] = {}
        self._jobs: dict[str, JobStore] = {}
        self._files: FileStore | None = None
        self._owned_client: AsyncMongoClient | None = None
        self._uri: str | None = None  # given to open(): where the audit writer process connects
        self._security: SecurityStore | None = None
        # the registry report's per-patient rows, kept by every write once given their definition
        self.report_rows = ReportRows(db, self._collection)
        # Indexes of the collections not created yet (see ensure_indexes), and the ones a write may have created.
        self._deferred: dict[str, list[IndexModel]] = {}
        self._written: set[str] = set()

    @classmethod
    def open(cls, uri: str, database: str, access: AccessPolicy | None = None, *,
             timeout_seconds: float | None = None) -> ResourceStore:
        """A store over ``database`` of the MongoDB at ``uri``, with a client of its own (see :meth:`close`)."""
        client = connect(uri)
        store = cls(client[database], access, timeout_seconds=timeout_seconds)
        store._owned_client = client
        store._uri = uri
        return store

    async def close(self) -> None:
        """Close the client :meth:`open` made."""
        if self._owned_client is not None:
            await self._owned_client.close()

    def _collection(self, name: str) -> AsyncCollection:
        """Collection objects are cached: building one costs more than a small query's own client work."""
        found = self._collections.get(name)
        if found is None:
            found = self._collections[name] = self._db[name]
        return found

    async def ping(self) -> None:
        """Raise unless MongoDB answers (readiness probe)."""
        await self._db.command("ping")

    def jobs(self, kind: str) -> JobStore:
        """The background jobs of ``kind`` (``export``, ``reindex``), see :mod:`fhir_server.storage.jobs`."""
        found = self._jobs.get(kind)
        if found is None:
            found = self._jobs[kind] = JobStore(self._collection(JOBS), kind)
        return found

    def security(self) -> SecurityStore:
        """Signing keys and used client assertions, see :mod:`fhir_server.storage.security_store`."""
        if self._security is None:
            self._security = SecurityStore(self._db)
        return self._security

    def files(self) -> FileStore:
        """Bulk export files (GridFS), see :mod:`fhir_server.storage.files`."""
        if self._files is None:
            self._files = FileStore(self._db)
        return self._files

    def audit_log(self, index: Callable[[dict[str, Any]], dict[str, Any]], *, batch_size: int,
                  interval: float, process: ProcessIndex | None = None) -> AuditLog:
        """The AuditEvent collection's writer (:mod:`fhir_server.storage.audit_log`; ``index``: an event's search
        values); one per process. With ``process`` (the child's ``index``, and which events it may index), the
        reads' events are written by a process of its own (:mod:`fhir_server.storage.audit_process`; a store
        made by :meth:`open` only: the child connects to the same URI)."""
        here = AuditLog(self._collection(AUDIT_EVENTS), index, batch_size=batch_size, interval=interval)
        if process is None or self._uri is None:
            return here
        child = WriterProcess(self._uri, self._db.name, AUDIT_EVENTS, process.index)
        return ProcessAuditLog(here, child, process.deferred)

    # -- setup -----------------------------------------------------------------------------------------

    async def ensure_indexes(self, search_indexes: IndexSpecs, eager: Iterable[str] | None = None) -> None:
        """Create the indexes of the resource collections (the search indexes given, per collection), of
        history and of the claims; drop the ones this version no longer declares (idempotent).

        With every R4 type that is some 700 index tables, most of them for types a deployment never holds:
        a collection that does not exist yet and is not ``eager`` gets its indexes after the first transaction
        that writes to it commits (MongoDB creates the collection inside that transaction); until then it
        holds nothing, so no search misses an index. ``eager`` None: every collection now."""
        existing = set(await self._db.list_collection_names())
        now = set(search_indexes) if eager is None else (set(eager) | existing) & set(search_indexes)
        for resource_type, specs in search_indexes.items():
            models = [IndexModel([("lastUpdated", DESCENDING), ("_id", ASCENDING)]),
                      IndexModel([("center", ASCENDING), ("_id", ASCENDING)]),
                      *(IndexModel(keys, **options) for keys, options in specs)]
            if resource_type in now:
                await self._create_indexes(resource_type, models)
            else:
                self._deferred[resource_type] = models
        await self._create_indexes(REPORT_ROWS, report_rows.INDEXES)
        # center-first twins of the history indexes: a center's history (type or system level) reads its own
        # versions in order, instead of walking every center's (the read filter of ``storage/access.py``)
        await self._create_indexes(HISTORY, [
            IndexModel([("type", ASCENDING), ("id", ASCENDING), ("vid", DESCENDING)], unique=True),
            IndexModel(_HISTORY_ORDER),
            IndexModel([("type", ASCENDING), *_HISTORY_ORDER_AFTER_TYPE]),
            IndexModel([("center", ASCENDING), *_HISTORY_ORDER]),
            IndexModel([("center", ASCENDING), ("type", ASCENDING), *_HISTORY_ORDER_AFTER_TYPE]),
        ])

    async def assign_missing_centers(self, resource_types: Sequence[str]) -> int:
        """The start-up migration of issue #11: documents stored before centers existed get theirs (current and
        history), with the admin rules of ``storage/centers.py``; returns how many resources it changed.

        Run after :meth:`ensure_indexes` (the ``center,_id`` index finds the documents without the field: the
        ``null`` bounds of a missing field, so an up-to-date database costs one index probe per collection).
        Organizations first, then Patients, then the rest: each derivation reads centers already set. Until it
        has run, the read filter hides the documents without a center from ``ehr`` callers (fail closed)."""
        order = sorted(resource_types, key=lambda t: (t != "Organization", t != "Patient"))
        changed = 0
        for kind in order:
            async for doc in self._collection(kind).find({"center": {"$exists": False}}, {"resource": 1}):
                resource = doc.get("resource") or await self._last_content(kind, doc["_id"])
                version = Version(kind, doc["_id"], resource, created=True)
                (center,) = self.access.centers(RequestContext.system(), [version],
                                                await self._stored_centers(needed_keys([version]), None))
                # history first: a migration stopped in between finds the current document still to do
                await self._collection(HISTORY).update_many(
                    {"type": kind, "id": doc["_id"], "center": {"$exists": False}}, {"$set": {"center": center}})
                await self._collection(kind).update_one({"_id": doc["_id"], "center": {"$exists": False}},
                                                        {"$set": {"center": center}})
                changed += 1
        return changed

    async def _last_content(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The content of the newest version of a resource that has one (a deleted resource's last)."""
        doc = await self._collection(HISTORY).find_one(
            {"type": resource_type, "id": resource_id, "resource": {"$ne": None}}, {"resource": 1},
            sort=[("vid", DESCENDING)])
        return doc["resource"] if doc else None

    async def _create_indexes(self, collection: str, models: list[IndexModel]) -> None:
        """Idempotent, and safe while other processes (workers, nodes) do the same at the same time: the
        collection is created without the driver's check-then-create (``check_exists``, a race another process
        wins between the check and the create), and an index another process dropped first is gone all the same."""
        try:
            await self._db.create_collection(collection, check_exists=False)
        except OperationFailure as exc:
            if exc.code != _NAMESPACE_EXISTS:
                raise
        created = set(await self._collection(collection).create_indexes(models))
        async for index in await self._collection(collection).list_indexes():
            if index["name"] != "_id_" and index["name"] not in created:
                try:
                    await self._collection(collection).drop_index(index["name"])
                except OperationFailure as exc:
                    if exc.code != _INDEX_NOT_FOUND:
                        raise

    # -- transactions ----------------------------------------------------------------------------------

    @bounded
    async def run_transaction(self, work: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run ``work`` in one snapshot transaction, retried by the driver on transient errors."""
        async with self._db.client.start_session() as session:
            result = await session.with_transaction(
                counted(work), read_concern=ReadConcern("snapshot"), write_concern=MAJORITY
            )
        await self._index_new_collections()
        return result

    async def _index_new_collections(self) -> None:
        """The deferred indexes of the collections written to (see :meth:`ensure_indexes`)."""
        for resource_type in list(self._written):
            self._written.discard(resource_type)
            models = self._deferred.pop(resource_type, None)
            if models is None:
                continue  # indexed already (by a concurrent transaction's completion)
            try:
                await self._create_indexes(resource_type, models)
            except Exception:
                self._deferred[resource_type] = models  # tried again after the next write to it
                raise

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncClientSession]:
        """A plain session (no transaction) for work that only reads, e.g. ``$validate``."""
        async with self._db.client.start_session() as session:
            yield session

    # -- counters --------------------------------------------------------------------------------------

    @bounded
    async def read_counter(self, name: str, session: Session = None) -> tuple[int, str]:
        """The value and token of counter ``name`` ((0, "") before its first bump). The token is drawn when the
        counter document is created: a counter re-created after a wipe differs even if its value matches."""
        return _counter_value(await self._collection(COUNTERS).find_one({"_id": name}, session=session))

    async def bump_counter(self, name: str, session: AsyncClientSession) -> None:
        """Increment counter ``name`` in the session's transaction (so it moves exactly when the writes commit)."""
        await self._collection(COUNTERS).update_one(
            {"_id": name}, {"$inc": {"n": 1}, "$setOnInsert": {"token": uuid.uuid4().hex}},
            upsert=True, session=session)

    # -- reads -----------------------------------------------------------------------------------------

    def _filter(self, ctx: RequestContext, resource_type: str | None, base: dict[str, Any]) -> dict[str, Any]:
        return restrict(base, self.access.read_filter(ctx, resource_type))

    def _read_filters(self, ctx: RequestContext) -> ReadFilters:
        """What ``ctx`` may read, per collection (aggregations, reads of several types' history)."""
        return ReadFilters(lambda resource_type: self.access.read_filter(ctx, resource_type),
                           rows=self.access.rows_filter(ctx))

    def serves_report_rows(self, ctx: RequestContext) -> bool:
        """Whether the report's rows may serve ``ctx`` (kept by the writes, readable through its filter)."""
        return self.report_rows.definition is not None and self.access.rows_filter(ctx) is not None

    @bounded
    async def current(self, ctx: RequestContext, resource_type: str, resource_id: str,
                      session: Session = None) -> StoredVersion | None:
        """The current version of a resource, tombstone included (to tell 404 from 410)."""
        doc = await self._collection(resource_type).find_one(
            self._filter(ctx, resource_type, {"_id": resource_id}),
            {"sp": 0}, session=session,
        )
        return StoredVersion.from_current(resource_type, doc) if doc else None

    @bounded
    async def current_many(self, ctx: RequestContext, resource_type: str, resource_ids: Sequence[str],
                           session: Session = None, centers: dict[str, str | None] | None = None,
                           ) -> dict[str, StoredVersion | None]:
        """:meth:`current` of several ids in one query: every id given, None for those not stored. ``centers``:
        filled with the center each document found is stored with (:func:`stored_center`)."""
        found: dict[str, StoredVersion | None] = dict.fromkeys(resource_ids)
        cursor = self._collection(resource_type).find(
            self._filter(ctx, resource_type, {"_id": {"$in": list(found)}}), {"sp": 0}, session=session)
        async for doc in cursor:
            found[doc["_id"]] = StoredVersion.from_current(resource_type, doc)
            if centers is not None:
                centers[doc["_id"]] = stored_center(doc)
        return found

    @bounded
    async def version(self, ctx: RequestContext, resource_type: str, resource_id: str, vid: int,
                      session: Session = None) -> StoredVersion | None:
        doc = await self._collection(HISTORY).find_one(
            self._filter(ctx, resource_type, {"type": resource_type, "id": resource_id, "vid": vid}),
            session=session,
        )
        return StoredVersion.from_history(doc) if doc else None

    @bounded
    async def find(self, ctx: RequestContext, resource_type: str, query: dict[str, Any], *,
                   sort: Sequence[tuple[str, int]] | None = None, limit: int = 0,
                   projection: dict[str, Any] | None = None, session: Session = None) -> list[dict[str, Any]]:
        """Current, non-deleted documents of one type matching a compiled search filter."""
        cursor = self._collection(resource_type).find(
            self._filter(ctx, resource_type, restrict(query, NOT_DELETED)),
            projection, sort=list(sort) if sort else None, limit=limit, session=session,
        )
        return [doc async for doc in cursor]

    @bounded
    async def find_each(self, ctx: RequestContext, resource_type: str, queries: Sequence[dict[str, Any]], *,
                        limit: int, session: Session = None) -> list[list[dict[str, Any]]]:
        """The current documents (without ``sp``) matching each of ``queries``, at most ``limit`` each, in one
        round trip: the union is matched with the indexes, then split per query by ``$facet``."""
        if not queries:
            return []
        result = await self.aggregate(ctx, resource_type, _each_pipeline(queries, limit), session=session)
        return [list(result[0][f"q{i}"]) if result else [] for i in range(len(queries))]

    @bounded
    async def find_each_of_types(self, ctx: RequestContext, queries: Mapping[str, Sequence[dict[str, Any]]], *,
                                 limit: int, session: Session = None) -> dict[str, list[list[dict[str, Any]]]]:
        """:meth:`find_each` of several types in one command (issue #14: in a transaction each command costs
        mongod about as much as a small query's own work, so a Bundle's lookups of five types are one command,
        not five). ``$unionWith`` is refused inside a transaction, ``$lookup`` is not: one empty ``$documents``
        document looks up each type's union, split per query by ``$facet`` as :meth:`find_each` does."""
        kinds = [kind for kind, each in queries.items() if each]
        if len(kinds) < 2:
            return {kind: await self.find_each(ctx, kind, queries[kind], limit=limit, session=session)
                    for kind in queries}
        found, _ = await self._each_of_types(ctx, queries, limit, session, None)
        return found

    @bounded
    async def find_each_of_types_and_counter(self, ctx: RequestContext,
                                             queries: Mapping[str, Sequence[dict[str, Any]]], counter: str, *,
                                             limit: int, session: Session = None,
                                             ) -> tuple[dict[str, list[list[dict[str, Any]]]], tuple[int, str]]:
        """:meth:`find_each_of_types` and :meth:`read_counter` of ``counter`` in the same command: a transaction
        Bundle's ``ifNoneExist`` lookups and the conformance epoch its validation needs are one round trip (every
        command of a transaction costs the server's driver and mongod about as much as a small query)."""
        found, value = await self._each_of_types(ctx, queries, limit, session, counter)
        assert value is not None
        return found, value

    async def _each_of_types(self, ctx: RequestContext, queries: Mapping[str, Sequence[dict[str, Any]]], limit: int,
                             session: Session, counter: str | None,
                             ) -> tuple[dict[str, list[list[dict[str, Any]]]], tuple[int, str] | None]:
        kinds = [kind for kind, each in queries.items() if each]
        pipeline: list[dict[str, Any]] = [{"$documents": [{}]}]
        for n, kind in enumerate(kinds):
            pipeline.append({"$lookup": {"from": kind, "pipeline": _each_pipeline(queries[kind], limit),
                                         "as": f"t{n}"}})
        # the counter joins after the access filter is put in front of every resource read: it is read by _id
        # from the store's own counters collection, which holds no resource (as read_counter reads it)
        tail = [{"$lookup": {"from": COUNTERS, "pipeline": [{"$match": {"_id": counter}}], "as": "counter"}}
                ] if counter is not None else []
        cursor = await self._db.aggregate([*guarded_documents(pipeline, self._read_filters(ctx)), *tail],
                                          session=session)
        (row,) = [doc async for doc in cursor]
        found = {kind: [list(row[f"t{n}"][0][f"q{i}"]) if row[f"t{n}"] else [] for i in range(len(queries[kind]))]
                 for n, kind in enumerate(kinds)}
        value = _counter_value(row["counter"][0] if row["counter"] else None) if counter is not None else None
        return {kind: found.get(kind, []) for kind in queries}, value

    async def iterate(self, ctx: RequestContext, resource_type: str, query: dict[str, Any], *,
                      batch_size: int = 500, projection: dict[str, Any] | None = None,
                      sort: Sequence[tuple[str, int]] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Stream matching current documents from a cursor (bulk export: memory stays flat)."""
        cursor = self._collection(resource_type).find(
            self._filter(ctx, resource_type, restrict(query, NOT_DELETED)), projection,
            sort=list(sort) if sort else None, batch_size=batch_size,
        )
        async for doc in cursor:
            yield doc

    @bounded
    async def count(self, ctx: RequestContext, resource_type: str, query: dict[str, Any], *,
                    session: Session = None, limit: int = 0) -> int:
        kwargs: dict[str, Any] = {"session": session}
        if limit:
            kwargs["limit"] = limit
        return int(await self._collection(resource_type).count_documents(
            self._filter(ctx, resource_type, restrict(query, NOT_DELETED)), **kwargs))

    @bounded
    async def aggregate(self, ctx: RequestContext, collection: str, pipeline: Sequence[dict[str, Any]], *,
                        session: Session = None) -> list[dict[str, Any]]:
        """Run ``pipeline`` on ``collection`` (a resource type, or history) with what ``ctx`` may read in front of
        every read of a collection, the first and those of ``$lookup``, ``$unionWith``, ``$graphLookup``
        (:func:`fhir_server.storage.aggregation.guarded`); a read it cannot filter raises ``UnguardedRead``."""
        cursor = await self._collection(collection).aggregate(guarded(collection, pipeline, self._read_filters(ctx)),
                                                              session=session)
        return [doc async for doc in cursor]

    @staticmethod
    def first_version_lookup(resource_type: str, reference_field: str, into: str) -> list[dict[str, Any]]:
        """Aggregation stages putting into ``into`` the first version (``vid`` 1: when the resource was first
        stored) of the resource whose relative reference ``Type/id`` is in ``reference_field``, as
        ``[{"lastUpdated": ...}]``: an empty list when the field is missing, or the caller may not read it
        (:meth:`aggregate` adds the access filter of ``resource_type``).

        ``Type/id`` + ``/1`` is that version's history key (``history_key``): the join is one lookup on the
        history ``_id`` index, and a document without the field looks up nothing."""
        key = f"{into}Key"
        return [
            {"$set": {key: {"$cond": [{"$eq": [{"$type": f"${reference_field}"}, "string"]},
                                      {"$concat": [f"${reference_field}", "/1"]}, "$$REMOVE"]}}},
            {"$lookup": {"from": HISTORY, "localField": key, "foreignField": "_id", "as": into, "pipeline": [
                {"$match": {"type": resource_type, "vid": 1}},
                {"$project": {"_id": 0, "lastUpdated": 1}}]}},
            {"$unset": key},
        ]

    @staticmethod
    def first_versions(resource_type: str, key: str, into: str, ids: Sequence[str] | None = None) -> dict[str, Any]:
        """A ``$unionWith`` stage bringing in, for every resource of ``resource_type`` that the caller may read
        (:meth:`aggregate` adds the access filter), when it was first stored (its version 1) as
        ``{key: "Type/id", into: lastUpdated}``. One scan of the type's history (the ``type, lastUpdated, id,
        vid`` index) for all resources at once (``ids``: only those, from the ``type, id, vid`` index): unlike
        :meth:`first_version_lookup`, no sub-query per document, whose fixed cost dominated a per-patient join
        (bench/README.md, "The registry report at scale")."""
        return {"$unionWith": {"coll": HISTORY, "pipeline": [
            {"$match": {"type": resource_type, "vid": 1, **({} if ids is None else {"id": {"$in": list(ids)}})}},
            {"$project": {"_id": 0, key: {"$concat": [f"{resource_type}/", "$id"]}, into: "$lastUpdated"}}]}}

    @bounded
    async def history(self, ctx: RequestContext, resource_type: str | None, resource_id: str | None, *,
                      since: datetime | None = None, before: datetime | None = None,
                      after_key: HistoryKey | None = None, newer: bool = False, limit: int = 50,
                      session: Session = None) -> list[StoredVersion]:
        """Versions newest first, keyset-paged on (lastUpdated, type, id, vid) descending: ``vid`` as a number
        (version 10 is newer than 9, which the string ``_id`` would not say). One resource's versions are in
        ``vid`` order, the same order (each version's lastUpdated is after its predecessor's), read from the
        unique ``type,id,vid`` index rather than by scanning the type's history in time order for them.
        ``newer``: the versions newer than ``after_key`` instead, oldest first (a previous page, reversed)."""
        beyond, order = _keyset(resource_id is not None, after_key, newer)
        query = restrict(_history_query(resource_type, resource_id, since, before), beyond)
        cursor = self._collection(HISTORY).find(self._filter(ctx, resource_type, query), sort=order, limit=limit,
                                                session=session)
        return [StoredVersion.from_history(doc) async for doc in cursor]

    @bounded
    async def count_history(self, ctx: RequestContext, resource_type: str | None, resource_id: str | None,
                            since: datetime | None = None, session: Session = None, limit: int = 0) -> int:
        """Versions ``history`` would list (at most ``limit`` of them counted, when given)."""
        query = _history_query(resource_type, resource_id, since, None)
        kwargs: dict[str, Any] = {"session": session}
        if limit:
            kwargs["limit"] = limit
        return int(await self._collection(HISTORY).count_documents(self._filter(ctx, resource_type, query),
                                                                  **kwargs))

    @bounded
    async def history_during(self, ctx: RequestContext, types: Sequence[str], resource_id: str | None,
                             period: Period, *, since: datetime | None = None, after_key: HistoryKey | None = None,
                             newer: bool = False, limit: int = 50, session: Session = None) -> list[StoredVersion]:
        """The versions of ``types`` (of one resource, with ``resource_id``) that were current at some point of
        ``period`` (history's ``_at``), in :meth:`history`'s order and paging."""
        pipeline = _during(types, resource_id, period, since, after_key, newer)
        docs = await self.aggregate(ctx, HISTORY, [*pipeline, {"$limit": limit}], session=session)
        return [StoredVersion.from_history(doc) for doc in docs]

    @bounded
    async def count_history_during(self, ctx: RequestContext, types: Sequence[str], resource_id: str | None,
                                   period: Period, *, since: datetime | None = None, session: Session = None,
                                   limit: int = 0) -> int:
        """Versions :meth:`history_during` would list (at most ``limit`` of them counted, when given)."""
        pipeline = _during(types, resource_id, period, since, None)
        capped = [{"$limit": limit}] if limit else []
        counted = await self.aggregate(ctx, HISTORY, [*pipeline, *capped, {"$count": "n"}], session=session)
        return int(counted[0]["n"]) if counted else 0

    async def versions_matching(self, ctx: RequestContext, resource_types: Sequence[str], query: dict[str, Any], *,
                                projection: dict[str, Any] | None = None, session: Session = None,
                                limit: int = 0) -> AsyncIterator[dict[str, Any]]:
        """History documents (any version) of ``resource_types`` matching ``query``, newest version first."""
        cursor = self._collection(HISTORY).find(restrict(self._read_filters(ctx).history(resource_types), query),
                                                 projection, sort=[("vid", DESCENDING)], limit=limit, session=session)
        async for doc in cursor:
            yield doc

    # -- writes ----------------------------------------------------------------------------------------

    async def apply(self, ctx: RequestContext, writes: Iterable[ResourceWrite], session: AsyncClientSession,
                    claims: Sequence[tuple[str, str]] = (), known_centers: Mapping[Key, str | None] | None = None,
                    ) -> PendingRows:
        """Store new versions: one bulk write per collection (the engineering notes: 5x faster than one by one).

        Each version is stored with the center ``AccessPolicy.centers`` gives it (which may refuse the write:
        403, or 404 for another center's id). ``claims`` (key, owner ``Type/id``) are the conditional creates'
        claims of these writes: each is written per center, the center its owner is stored with (see
        :meth:`claim`), so the race-free conditional create holds within a center. ``known_centers``: centers of
        stored resources already read in this transaction (:func:`stored_center` of documents a conditional
        create matched), which the center rules then need not read again.

        Returns what the writes leave for the report rows: the Patients whose rows they may change
        (``ReportRows.touched``) and the documents stored for them (``PendingRows``), for the unit of work to
        refresh once before it commits (``ReportRows.refresh``)."""
        writes = list(writes)
        for write in writes:
            self.access.check_write(ctx, write.type, write.resource)
        stored_centers = await self.centers_for(ctx, writes, session, known_centers or {})
        patients = await self.report_rows.touched(writes, session)
        by_owner = {f"{w.type}/{w.id}": center for w, center in zip(writes, stored_centers, strict=True)}
        await self.claim([(f"{key}@{by_owner.get(owner, ctx.center) or ''}", owner) for key, owner in claims],
                         session)
        inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        replaces: dict[str, list[ReplaceOne]] = defaultdict(list)
        history: list[dict[str, Any]] = []
        currents: list[dict[str, Any]] = []
        for write, center in zip(writes, stored_centers, strict=True):
            if write.type in self._deferred:
                self._written.add(write.type)
            # the resource goes into two documents, current and history: encoded to BSON once, copied twice
            content = None if write.resource is None else RawBSONDocument(
                bson.encode(write.resource, codec_options=CODEC_OPTIONS))
            doc = write.current_document(center, content)
            if write.previous_vid is None:
                inserts[write.type].append(doc)
            else:
                replaces[write.type].append(ReplaceOne({"_id": write.id, "vid": write.previous_vid}, doc))
            currents.append(doc)
            history.append(write.history_document(center, content))
        # Another transaction that commits one of these ids after this one's snapshot (a concurrent update-as-create)
        # makes the insert a write conflict, labelled TransientTransactionError: the driver runs the whole
        # transaction again, and its new snapshot takes the update path (tests/storage/test_update_as_create_race.py).
        for resource_type, docs in inserts.items():
            await self._collection(resource_type).insert_many(docs, ordered=True, session=session)
        for resource_type, ops in replaces.items():
            result = await self._collection(resource_type).bulk_write(ops, ordered=True, session=session)
            if result.matched_count != len(ops):
                raise Conflict("The resource was changed by another request; retry", code="conflict")
        if history:
            await self._collection(HISTORY).insert_many(history, ordered=True, session=session)
        return self.report_rows.pending(writes, patients, currents, history)

    async def centers_for(self, ctx: RequestContext, writes: Sequence[ResourceWrite], session: Session = None,
                          known: Mapping[Key, str | None] | None = None) -> list[str | None]:
        """The center each write is stored with (``AccessPolicy.centers``, which may refuse it), given the
        centers of the stored resources the rules look at: those in ``known`` (read in this transaction), the
        others read here without the read filter, one query per type, and never returned to the caller."""
        versions = [Version(w.type, w.id, w.resource, created=w.previous_vid is None,
                            client_id=w.method == "PUT" and w.previous_vid is None) for w in writes]
        known = known or {}
        needed = needed_keys(versions)
        stored = {k: known[k] for k in needed if k in known}
        stored.update(await self._stored_centers(needed - stored.keys(), session))
        return self.access.centers(ctx, versions, stored)

    async def _stored_centers(self, keys: Iterable[Key], session: Session) -> dict[Key, str | None]:
        ids_by_type: dict[str, list[str]] = defaultdict(list)
        for kind, ident in keys:
            if RESOURCE_COLLECTION.match(kind):
                ids_by_type[kind].append(ident)
        found: dict[Key, str | None] = {}
        for kind, ids in ids_by_type.items():
            async for doc in self._collection(kind).find({"_id": {"$in": ids}}, {"center": 1}, session=session):
                found[(kind, doc["_id"])] = stored_center(doc)
        return found

    async def set_search_values(self, ctx: RequestContext, resource_type: str,
                                batch: Sequence[tuple[str, int, dict[str, Any]]]) -> int:
        """Replace ``sp`` of the versions read (``_id`` and ``vid`` must still match: a concurrent write wins)
        without a new version (re-indexing); returns how many documents were updated."""
        if not batch:
            return 0
        ops = [UpdateOne(self._filter(ctx, resource_type, {"_id": ident, "vid": vid, "deleted": False}),
                         {"$set": {"sp": values}}) for ident, vid, values in batch]
        result = await self._collection(resource_type).bulk_write(ops, ordered=False)
        return int(result.matched_count)

    async def replace_meta(self, ctx: RequestContext, version: StoredVersion, resource: dict[str, Any],
                           search_values: dict[str, Any], session: AsyncClientSession, *, current: bool) -> None:
        """``$meta-add`` and ``$meta-delete`` (https://hl7.org/fhir/R4/resource-operation-meta-add.html: "does not
        cause a new version of the resource to be created. The meta is updated directly"): ``resource`` is
        ``version`` with another ``meta``, written over it in its history document and, when it is the
        ``current`` version, with its search values in the current document. Allowed where an update of the
        resource would be (the center rules: 403, or 404 for another center's id); the center stays. A
        concurrent write of the resource (the current version no longer ``version``) is a 409."""
        self.access.check_write(ctx, version.type, resource)
        as_update = ResourceWrite(version.type, version.id, version.vid, version.last_updated, "PUT", resource,
                                  previous_vid=version.vid)
        await self.centers_for(ctx, [as_update], session)  # refuses what an update would be refused
        meta = resource.get("meta")
        changed = await self._collection(HISTORY).update_one(
            {"_id": history_key(version.type, version.id, version.vid)}, {"$set": {"resource.meta": meta}},
            session=session)
        if changed.matched_count == 1 and current:
            changed = await self._collection(version.type).update_one(
                {"_id": version.id, "vid": version.vid, "deleted": False},
                {"$set": {"resource.meta": meta, "sp": search_values}}, session=session)
        if changed.matched_count != 1:
            raise Conflict("The resource was changed by another request; retry", code="conflict")

    async def claim(self, claims: Sequence[tuple[str, str]], session: AsyncClientSession) -> None:
        """Touch the claim document of each conditional create's criteria (key, owner) in the transaction.

        Two transactions that both found no match both write the same claim document: MongoDB lets only one
        commit and aborts the other with a write conflict (a TransientTransactionError), so the driver re-runs
        it, and its new snapshot sees the first one's resource. That is what makes concurrent identical
        conditional creates produce exactly one resource. One round trip for all the claims of a Bundle.
        :meth:`apply` suffixes each key with the center the created resource is stored with: the criteria of two
        centers' clients never match each other's resources, so each center gets its own one resource.
        """
        if not claims:
            return
        at = now_ms()
        await run_writes(self._db, "update", CLAIMS,
                         [upsert(key, {"$set": {"owner": owner, "at": at}}) for key, owner in claims], session)


def stored_center(doc: Mapping[str, Any]) -> str | None:
    """The center a current document was stored with (``storage/centers.py``)."""
    center: str | None = doc.get("center", UNASSIGNED)  # not migrated yet: fail closed
    return center


def _counter_value(doc: Mapping[str, Any] | None) -> tuple[int, str]:
    """A counter document's value and token ((0, "") before its first bump)."""
    return (int(doc["n"]), str(doc.get("token", ""))) if doc else (0, "")


def _each_pipeline(queries: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The union of ``queries`` matched with the indexes, then split per query (``q0``, ``q1``...) by ``$facet``,
    at most ``limit`` documents each, without ``sp``."""
    union = queries[0] if len(queries) == 1 else {"$or": list(queries)}
    facets = {f"q{i}": [{"$match": q}, {"$limit": limit}, {"$project": {"sp": 0}}] for i, q in enumerate(queries)}
    return [{"$match": union}, {"$facet": facets}]


def _keyset(instance: bool, key: HistoryKey | None, newer: bool) -> tuple[dict[str, Any], IndexKeys]:
    """The history rows beyond ``key`` in history's order (older; ``newer``: newer) and the sort that reads them
    from ``key`` on: newest first, or oldest first for the newer ones."""
    order = [("vid", DESCENDING)] if instance else _HISTORY_ORDER
    if newer:
        order = [(name, -direction) for name, direction in order]
    if key is None:
        return {}, order
    comparison = "$gt" if newer else "$lt"
    if instance:
        return {"vid": {comparison: key[3]}}, order
    fields = [name for name, _ in _HISTORY_ORDER]  # a lexicographic comparison, field by field
    return {"$or": [{**dict(zip(fields[:n], key[:n], strict=True)), fields[n]: {comparison: key[n]}}
                    for n in range(len(fields))]}, order


def _during(types: Sequence[str], resource_id: str | None, period: Period, since: datetime | None,
            after_key: HistoryKey | None, newer: bool = False) -> list[dict[str, Any]]:
    """The stages finding the versions current at some point of ``period`` = [start, end): stored before its end,
    and stored at or after its start or superseded after it (the next version, ``vid`` + 1, stored after the
    start, or none: the version is still current). The next version comes from the unique ``type, id, vid``
    index, one look-up per version stored before the start; a next version the caller may not read counts
    as none."""
    start, end = period
    pinned: dict[str, Any] = {"type": types[0] if len(types) == 1 else {"$in": list(types)}}
    query = {**_history_query(None, resource_id, since, end), **pinned}  # ``type`` on top: the guard reads it
    beyond, order = _keyset(resource_id is not None, after_key, newer)
    if beyond:
        query["$and"] = [beyond]
    stages: list[dict[str, Any]] = [{"$match": query}, {"$sort": dict(order)}]
    if start is None:
        return stages
    successor = {"$and": [{"$eq": ["$type", "$$type"]}, {"$eq": ["$id", "$$id"]}, {"$eq": ["$vid", "$$next"]}]}
    return [*stages,
            {"$lookup": {"from": HISTORY, "let": {"type": "$type", "id": "$id", "next": {"$add": ["$vid", 1]}},
                         "pipeline": [{"$match": {**pinned, "$expr": successor}},
                                      {"$project": {"_id": 0, "lastUpdated": 1}}],
                         "as": "_successor"}},
            {"$match": {"$or": [{"lastUpdated": {"$gte": start}}, {"_successor": {"$size": 0}},
                                {"_successor.lastUpdated": {"$gt": start}}]}},
            {"$unset": "_successor"}]


def _history_query(resource_type: str | None, resource_id: str | None, since: datetime | None,
                   before: datetime | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if resource_type:
        query["type"] = resource_type
    if resource_id:
        query["id"] = resource_id
    bounds = {op: at for op, at in (("$gte", since), ("$lt", before)) if at is not None}
    if bounds:
        query["lastUpdated"] = bounds
    return query


def same_as_stored(new: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether ``new`` equals ``stored`` as MongoDB stores them (the client decodes Decimal128 to Decimal, so
    the BSON is compared)."""
    return stored is not None and bson.encode(new, codec_options=CODEC_OPTIONS) == bson.encode(
        stored, codec_options=CODEC_OPTIONS)
