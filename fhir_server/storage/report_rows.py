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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from fhir_server.storage.aggregation import ReadFilters, guarded, guarded_documents
from fhir_server.storage.documents import COUNTERS, REPORT_ROWS, ResourceWrite
from fhir_server.storage.write_commands import delete, run_writes, upsert

MARKER_ID = "report_rows"  # in ``counters``: {"_id": MARKER_ID, "format": RowDefinition.format}
PATIENT = "Patient"
# The patient of a reference, as the report's definitions read it (``reports/pipeline.py``, ``reference_id``):
# ``[base/]Patient/id[/_history/n]``.
_PATIENT_REFERENCE = re.compile(r"Patient/([A-Za-z0-9.-]+)(?:/_history/[A-Za-z0-9.-]+)?$")

Stage = dict[str, Any]


@dataclass(frozen=True)
class RowDefinition:
    """What the store needs to keep the rows, each run with the access filter of the system (every resource;
    deleted ones never): ``every_row()``, on ``Patient``, yields every row (``_id`` ``Patient/<id>``, ``center``);
    ``rows_of(ids)``, a database-level pipeline (``$documents``) that a transaction may run, the rows of the
    Patients ``ids``. ``sources``: the other types they read, each linked to its patient by ``resource.subject``;
    ``format``: names the rows' shape and definitions (stored rows of another format are rebuilt)."""

    format: str
    sources: frozenset[str]
    every_row: Callable[[], list[Stage]]
    rows_of: Callable[[Sequence[str]], list[Stage]]


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

    async def refresh(self, patient_ids: Iterable[str], session: AsyncClientSession | None) -> None:
        """Recompute and store the rows of ``patient_ids`` from what ``session`` sees (its transaction's own
        writes included); a patient without a stored Patient (deleted, or never stored) has no row."""
        ids = sorted(set(patient_ids))
        if self.definition is None or not ids:
            return
        cursor = await self._db.aggregate(guarded_documents(self.definition.rows_of(ids), EVERYTHING),
                                          session=session)
        rows = {row["_id"]: row async for row in cursor}
        if rows:
            await run_writes(self._db, "update", REPORT_ROWS, [upsert(key, row) for key, row in rows.items()], session)
        gone = [delete(key) for key in map(row_key, ids) if key not in rows]
        if gone:
            await run_writes(self._db, "delete", REPORT_ROWS, gone, session)

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
