"""Per-patient rows of the registry report, kept at write time (issue #14 item 4; bench/README.md, "The
registry report at scale" and "Report rows kept at write time").

The report reduces each patient's resources to one row (``reports/pipeline.py``: ``row_pipeline``, the
``$group`` of its definitions). Computing every row at each report read ~6.5 source documents per patient, a
cost that grows with the registry; so each row is stored in ``report_rows``, ``_id`` ``Patient/<id>``, with the
patient's center, and recomputed from that patient's stored resources in the same transaction as every write
that touches them: :func:`patients_touched` names the patients of the writes (a Patient, or the ``subject`` of a
source resource, before and after the write), the unit of work collects them over its flushes and refreshes each
once before it commits (``ResourceStore.refresh_report_rows``). A concurrent transaction that touches the same
patient writes the same row document: MongoDB aborts one of the two (a write conflict, re-run by the driver on a
snapshot that holds the other's writes), so a committed row is the one its patient's committed resources give.

A row is read as its Patient is (``storage/aggregation.py``: the Patient's access filter, through the row's
``center``). Data written around the server (a raw load, a restore of resources without rows) needs
:meth:`ResourceStore.rebuild_report_rows` (``fhir-server rebuild-report-rows``); the server rebuilds at start
when the stored rows' format marker is missing or is not the definition's.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from fhir_server.storage.aggregation import ReadFilters, guarded, guarded_documents
from fhir_server.storage.documents import COUNTERS, HISTORY, REPORT_ROWS, ResourceWrite
from fhir_server.storage.write_commands import delete, run_writes, upsert

MARKER_ID = "report_rows"  # in ``counters``: {"_id": MARKER_ID, "format": RowDefinition.format}
PATIENT = "Patient"
# The resources' BSON bytes one command of rows made from documents carries: with their search values (about as
# large again) far below MongoDB's 16 MB command limit. A registry patient's ~16 resources are ~20 KB; a patient
# whose own resources exceed it has its row made from the collections.
ROWS_OF_DOCUMENTS_BYTES = 4 * 1024 * 1024
# The patient of a reference, as the report's definitions read it (``reports/pipeline.py``, ``reference_id``):
# ``[base/]Patient/id[/_history/n]``.
_PATIENT_REFERENCE = re.compile(r"Patient/([A-Za-z0-9.-]+)(?:/_history/[A-Za-z0-9.-]+)?$")

Stage = dict[str, Any]


def every_document(_collection: str, _document: Mapping[str, Any]) -> bool:
    """A ``may_make_a_row`` that rules nothing out."""
    return True


@dataclass(frozen=True)
class RowDefinition:
    """What the store needs to keep the rows, each run with the access filter of the system (every resource;
    deleted ones never): ``every_row()``, on ``Patient``, yields every row (``_id`` ``Patient/<id>``, ``center``);
    ``rows_of(ids)``, a database-level pipeline (``$documents``) that a transaction may run, the rows of the
    Patients ``ids``; ``rows_of_documents(ids, documents)``, the same rows made from ``documents`` alone
    ((collection, stored document) pairs holding every source of those Patients: :class:`PendingRows`).
    ``sources``: the other types they read, each linked to its patient by ``resource.subject``; ``format``: names
    the rows' shape and definitions (stored rows of another format are rebuilt). ``may_make_a_row(collection,
    document)``: False only for a stored document that no row stage keeps, left out of ``rows_of_documents``."""

    format: str
    sources: frozenset[str]
    every_row: Callable[[], list[Stage]]
    rows_of: Callable[[Sequence[str]], list[Stage]]
    rows_of_documents: Callable[[Sequence[str], Sequence[tuple[str, Any]]], list[Stage]]
    may_make_a_row: Callable[[str, Mapping[str, Any]], bool] = every_document


def subject_patient(resource: dict[str, Any] | None) -> str | None:
    """The id of the Patient that ``resource.subject`` names, None when it names none."""
    subject = resource.get("subject") if isinstance(resource, dict) else None
    reference = subject.get("reference") if isinstance(subject, dict) else None
    found = _PATIENT_REFERENCE.search(reference) if isinstance(reference, str) else None
    return found.group(1) if found else None


def patients_touched(definition: RowDefinition, writes: Iterable[ResourceWrite],
                     previous: dict[tuple[str, str], dict[str, Any] | None]) -> set[str]:
    """Ids of the Patients whose rows ``writes`` may change: each written Patient, and the patient of each
    source resource written, before (``previous``: the stored resources replaced) and after the write."""
    touched: set[str] = set()
    for write in writes:
        if write.type == PATIENT:
            touched.add(write.id)
        elif write.type in definition.sources:
            for resource in (write.resource, previous.get((write.type, write.id))):
                patient = subject_patient(resource)
                if patient is not None:
                    touched.add(patient)
    return touched


def replaced_sources(definition: RowDefinition, writes: Iterable[ResourceWrite]) -> dict[str, list[str]]:
    """Ids per source type of the stored resources ``writes`` replace or delete (whose patient may change)."""
    found: dict[str, list[str]] = {}
    for write in writes:
        if write.previous_vid is not None and write.type in definition.sources:
            found.setdefault(write.type, []).append(write.id)
    return found


@dataclass
class _Written:
    collection: str
    patient: str | None  # the Patient the document is about: its own id, or its ``subject``'s
    document: dict[str, Any]
    deleted: bool

    @property
    def size(self) -> int:
        """The resource's BSON bytes (the store encodes it once, ``RawBSONDocument``), else an estimate."""
        content = self.document.get("resource")
        return len(content.raw) if isinstance(content, RawBSONDocument) else 16 * 1024


@dataclass
class PendingRows:
    """What a unit of work's writes leave for its report rows (``ReportRows.refresh``, once before it commits):
    ``patients``, the Patients whose rows they may change, and the documents they stored of the Patients and the
    rows' sources (the latest of each, and each Patient's first history version).

    A Patient whose id this transaction minted (``ReportRows.refresh``'s ``minted``) cannot be named by anything
    stored before it: every source of its row is among these documents, so its row is made from them
    (``RowDefinition.rows_of_documents``) without reading the collections, whose ``$lookup``s cost ~5 ms of
    mongod per transaction Bundle (bench/README.md, "Report rows of new patients")."""

    patients: set[str] = field(default_factory=set)
    written: dict[tuple[str, Any], _Written] = field(default_factory=dict)

    def merge(self, other: PendingRows) -> None:
        self.patients |= other.patients
        self.written.update(other.written)

    def record(self, definition: RowDefinition, write: ResourceWrite, current: dict[str, Any],
               history: dict[str, Any]) -> None:
        """Keep what ``write`` stored (``current``, and ``history`` for a Patient's first version)."""
        if write.type == PATIENT:
            self.written[(PATIENT, write.id)] = _Written(PATIENT, write.id, current, write.deleted)
            if write.vid == 1:
                self.written[(HISTORY, history["_id"])] = _Written(HISTORY, write.id, history, write.deleted)
        elif write.type in definition.sources:
            self.written[(write.type, write.id)] = _Written(write.type, subject_patient(write.resource), current,
                                                            write.deleted)

    def made_here(self, minted: Collection[str], budget: int,
                  may_make_a_row: Callable[[str, Mapping[str, Any]], bool] = every_document,
                  ) -> tuple[list[list[tuple[str, Any]]], list[str]]:
        """The :attr:`patients` created with an id in ``minted`` (and not deleted since), whose rows' sources are
        all in :attr:`written`, as groups of (collection, document) pairs of at most ``budget`` resource bytes
        each (the deleted versions, and the documents ``may_make_a_row`` rules out, left out), and the other
        patients."""
        about: dict[str, list[_Written]] = {}
        for written in self.written.values():
            if (written.patient is not None and not written.deleted
                    and may_make_a_row(written.collection, written.document)):
                about.setdefault(written.patient, []).append(written)
        groups: list[list[tuple[str, Any]]] = []
        others: list[str] = []
        group: list[tuple[str, Any]] = []
        used = 0
        for patient in sorted(self.patients):
            documents = about.get(patient, [])
            size = sum(w.size for w in documents)
            own = self.written.get((PATIENT, patient))
            if patient not in minted or own is None or own.deleted or size > budget:
                others.append(patient)
                continue
            if group and used + size > budget:
                groups.append(group)
                group, used = [], 0
            group.extend((w.collection, w.document) for w in documents)
            used += size
        if group:
            groups.append(group)
        return groups, others


def row_key(patient_id: str) -> str:
    return f"{PATIENT}/{patient_id}"


EVERYTHING = ReadFilters(lambda _resource_type: {}, rows={})  # a row is made of all its patient's resources
INDEXES = [IndexModel([("center", ASCENDING), ("_id", ASCENDING)]),  # the read filter of one center's rows
           # the rare rows the report makes again at read time (``reports/pipeline.py``: a moved Patient's)
           IndexModel([("foreign", ASCENDING)], partialFilterExpression={"foreign": True})]


class ReportRows:
    """The rows' collection, kept by the store's writes once :meth:`keep` has given it their definition
    (until then, as in a store of no report, writes keep no rows)."""

    def __init__(self, db: AsyncDatabase, collection: Callable[[str], AsyncCollection]) -> None:
        self._db = db
        self._collection = collection
        self.definition: RowDefinition | None = None

    def keep(self, definition: RowDefinition) -> None:
        self.definition = definition

    async def touched(self, writes: Sequence[ResourceWrite], session: AsyncClientSession | None) -> set[str]:
        """Ids of the Patients whose rows ``writes`` may change (read before they are applied: a replaced
        source resource's stored subject, one query per type, only for updates and deletes)."""
        definition = self.definition
        if definition is None:
            return set()
        previous: dict[tuple[str, str], dict[str, Any] | None] = {}
        for kind, ids in replaced_sources(definition, writes).items():
            async for doc in self._collection(kind).find({"_id": {"$in": ids}}, {"resource.subject": 1},
                                                        session=session):
                previous[(kind, doc["_id"])] = doc.get("resource")
        return patients_touched(definition, writes, previous)

    def pending(self, writes: Sequence[ResourceWrite], patients: set[str], stored: Iterable[dict[str, Any]],
                history: Iterable[dict[str, Any]]) -> PendingRows:
        """The :class:`PendingRows` of ``writes`` (the Patients ``patients`` they touch, the documents ``stored``
        for them and their ``history`` documents, in order)."""
        pending = PendingRows(patients)
        if self.definition is not None:
            for write, current, version in zip(writes, stored, history, strict=True):
                pending.record(self.definition, write, current, version)
        return pending

    async def refresh(self, pending: PendingRows, session: AsyncClientSession | None,
                      minted: Collection[str] = ()) -> None:
        """Recompute and store the rows of ``pending.patients`` from what ``session`` sees (its transaction's own
        writes included); a patient without a stored Patient (deleted, or never stored) has no row. The rows of
        Patients created with an id in ``minted`` (ids this transaction made up) are made from the documents it
        wrote (:class:`PendingRows`), the others from the collections."""
        ids = sorted(pending.patients)
        if self.definition is None or not ids:
            return
        groups, stored = pending.made_here(minted, ROWS_OF_DOCUMENTS_BYTES, self.definition.may_make_a_row)
        rows: dict[str, Any] = {}
        for documents in groups:
            patients = sorted({document["_id"] for collection, document in documents if collection == PATIENT})
            rows.update(await self._rows(self.definition.rows_of_documents(patients, documents), session))
        if stored:
            rows.update(await self._rows(self.definition.rows_of(stored), session))
        if rows:
            await run_writes(self._db, "update", REPORT_ROWS, [upsert(key, row) for key, row in rows.items()], session)
        gone = [delete(key) for key in map(row_key, ids) if key not in rows]
        if gone:
            await run_writes(self._db, "delete", REPORT_ROWS, gone, session)

    async def _rows(self, pipeline: list[Stage], session: AsyncClientSession | None) -> dict[str, Any]:
        cursor = await self._db.aggregate(guarded_documents(pipeline, EVERYTHING), session=session)
        return {row["_id"]: row async for row in cursor}

    async def rebuild(self) -> None:
        """Every row again from the stored resources (``$out``: the collection is replaced at once, its
        indexes kept), then the format marker. For data written around the server: a write that commits while
        this runs may be missed, so run it before serving (the server does at start) or run it again."""
        if self.definition is None:
            raise RuntimeError("The report rows have no definition (ReportRows.keep)")
        pipeline = [*guarded(PATIENT, self.definition.every_row(), EVERYTHING), {"$out": REPORT_ROWS}]
        cursor = await self._collection(PATIENT).aggregate(pipeline)
        async for _ in cursor:
            pass
        await self._collection(REPORT_ROWS).create_indexes(INDEXES)
        await self._collection(COUNTERS).update_one({"_id": MARKER_ID}, {"$set": {"format": self.definition.format}},
                                                    upsert=True)

    async def ensure_built(self, rebuild: bool = False, wait_seconds: float = 120.0) -> bool:
        """Rebuild when asked or when the stored rows are not of this definition's format; True when it rebuilt.
        Several processes starting together may all rebuild: a ``$out`` that fails because another one replaced
        the collection meanwhile waits for that one's marker instead of stopping this process's start."""
        if not rebuild and await self.up_to_date():
            return False
        try:
            await self.rebuild()
        except OperationFailure:
            deadline = time.monotonic() + wait_seconds
            while not await self.up_to_date():
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        return True

    async def count(self) -> int:
        return int(await self._collection(REPORT_ROWS).count_documents({}))

    async def up_to_date(self) -> bool:
        """True when the stored rows were built with this definition's format (a rebuild, or kept since) and are
        there (a registry with Patients and no rows, e.g. ``report_rows`` dropped, is rebuilt)."""
        marker = await self._collection(COUNTERS).find_one({"_id": MARKER_ID})
        if self.definition is None or marker is None or marker.get("format") != self.definition.format:
            return False
        # rows dropped (or never restored) while Patients are stored: not up to date either
        return (await self._collection(REPORT_ROWS).estimated_document_count() > 0
                or await self._collection(PATIENT).estimated_document_count() == 0)
