"""A unit of work: the writes of one request or one transaction Bundle, inside one MongoDB transaction.

Writes are staged and flushed in bulk (one insert per collection), and flushed before any query so that the
transaction's own reads see them. Reads of a single resource look at the staged writes first. The AuditEvent of the
writes (``interactions.audit``) is staged too and written by the last flush, in the same transaction; a unit of
work that changed something and staged no event gets one described by its writes (``audit_event.stage``), so no
change commits without its trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from fhir_server.conformance import bump_epoch
from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest
from fhir_server.interactions import audit_event
from fhir_server.interactions.search import find_matching
from fhir_server.resources import CONFORMANCE_TYPES
from fhir_server.services import Services
from fhir_server.storage.documents import ResourceWrite, StoredVersion, now_ms
from fhir_server.storage.report_rows import PendingRows
from fhir_server.storage.store import DbSession, ResourceStore, stored_center

T = TypeVar("T")
_ONE_MS = timedelta(milliseconds=1)  # BSON dates keep milliseconds


def new_id() -> str:
    return str(uuid.uuid4())


def query_params(query: str) -> list[tuple[str, str]]:
    """``identifier=s|v&_count=1`` -> [("identifier", "s|v"), ("_count", "1")]; bare '?' tolerated."""
    query = query.lstrip("?")
    if not query:
        raise InvalidRequest("A conditional interaction needs search criteria", code="invalid")
    return parse_qsl(query, keep_blank_values=True)


@lru_cache(maxsize=4096)  # a transaction's conditional create needs it twice: its ifNoneExist lookup, its claim
def normalized_criteria(resource_type: str, query: str) -> str:
    """One spelling per set of criteria: the key of a conditional create's claim."""
    return f"{resource_type}?{urlencode(sorted(query_params(query)))}"


class UnitOfWork:
    def __init__(self, ctx: RequestContext, services: Services, session: DbSession) -> None:
        self.ctx = ctx
        self.services = services
        self.session = session
        self.last_updated = now_ms()
        self._staged: dict[tuple[str, str], ResourceWrite] = {}
        self._unflushed: list[ResourceWrite] = []
        self._claims: list[tuple[str, str]] = []
        self._announced: dict[str, dict[str, Any]] = {}
        self._created: set[str] = set()
        self._primed: dict[tuple[str, str], StoredVersion | None] = {}
        self._audit: list[dict[str, Any]] = []
        # subject reference -> Type/id of the pending resources that named it, in the order they were first seen
        # (the order pending_resources() gives them: a tie between two of them goes the same way)
        self._about: dict[str, dict[str, None]] = {}
        self._centers: dict[tuple[str, str], str | None] = {}  # of current documents read in this transaction
        self._flushed: set[tuple[str, str]] = set()  # resources this unit of work has written to the store
        self._report_rows = PendingRows()  # what its writes leave for the report rows (storage/report_rows.py)
        self._minted: set[str] = set()  # ids it made up for the resources it creates (``mint_id``)
        self.conformance_checked = False
        # the conformance epoch as read in this transaction by a command that had to run anyway (a Bundle's
        # ifNoneExist lookups), so the validator's check of it needs no read of its own; dropped when a flush of
        # this unit of work moves the epoch
        self.epoch: tuple[int, str] | None = None
        # what a bulk load will write in this unit of work, not yet checked: lets a write check that reads the
        # store read for the whole batch at once (``risk.py``); a hint only, never taken as stored or announced
        self.upcoming: list[Any] = []

    @property
    def store(self) -> ResourceStore:
        return self.services.store

    async def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        staged = self._staged.get((resource_type, resource_id))
        if staged is not None:
            return staged.version()
        if (resource_type, resource_id) in self._primed:
            return self._primed[(resource_type, resource_id)]
        return await self.store.current(self.ctx, resource_type, resource_id, session=self.session)

    def prime(self, resource_type: str, found: dict[str, StoredVersion | None]) -> None:
        """Current versions read in bulk in this transaction (``None``: no such id), so that :meth:`current`
        needs no query for them (a bulk load reads a batch's ids with one query per type)."""
        for resource_id, version in found.items():
            self._primed[(resource_type, resource_id)] = version

    def primed_resource(self, reference: str) -> tuple[bool, dict[str, Any] | None]:
        """``Type/id`` from the primed versions: (False, None) when it was not primed (ask the store), else
        (True, its resource, None when no such resource is stored or it is deleted). Read in this transaction, so
        the same answer a query would give, as long as this unit of work has not written it (callers look at
        :meth:`pending_resource` first)."""
        kind, _, ident = reference.partition("/")
        if (kind, ident) not in self._primed:
            return False, None
        version = self._primed[(kind, ident)]
        return True, version.resource if version is not None and not version.deleted else None

    async def matches(self, resource_type: str, query: str, *, limit: int = 2) -> list[dict[str, Any]]:
        """Current resources matching conditional criteria (at most ``limit``), as of this transaction."""
        await self.flush()
        found = await find_matching(self.ctx, self.services, resource_type, query_params(query),
                                    session=self.session, limit=limit)
        self.remember_matches(resource_type, found)
        return found

    def remember_matches(self, resource_type: str, documents: Iterable[dict[str, Any]]) -> None:
        """Current documents conditional criteria matched in this transaction (read with ``ctx``'s access filter,
        ``sp`` left out): their centers (:meth:`remember_centers`) and their versions (:meth:`prime`), so that
        neither the center rules nor the validation of a reference to one (a registry Bundle's Patient names
        the center's Organization its ``ifNoneExist`` matched) nor an update of one reads it again."""
        documents = list(documents)
        self.remember_centers(resource_type, documents)
        self.prime(resource_type, {doc["_id"]: StoredVersion.from_current(resource_type, doc) for doc in documents
                                   if (resource_type, doc["_id"]) not in self._primed})

    def remember_centers(self, resource_type: str, documents: Iterable[dict[str, Any]]) -> None:
        """The centers of current documents read in this transaction (conditional criteria's matches): the
        center rules of the next flush need not read them again (``ResourceStore.apply``'s ``known_centers``)."""
        self.remember_centers_of(resource_type, {doc["_id"]: stored_center(doc) for doc in documents})

    def remember_centers_of(self, resource_type: str, centers: dict[str, str | None]) -> None:
        """:meth:`remember_centers` of ids read with their centers (``ResourceStore.current_many``)."""
        for resource_id, center in centers.items():
            self._centers[(resource_type, resource_id)] = center

    def claim(self, resource_type: str, query: str, owner: str) -> None:
        """Claim conditional criteria for ``owner``; written with the next flush, in this transaction."""
        self._claims.append((normalized_criteria(resource_type, query), owner))

    def announce(self, reference: str, resource: dict[str, Any], *, new: bool) -> None:
        """A resource this unit of work will write (a transaction's later entry): visible to validation.
        ``new``: it is created here (a fresh id), so nothing stored can refer to it yet."""
        self._announced[reference] = resource
        self._index_subject(reference, resource)
        if new:
            self._created.add(reference)

    def creates(self, reference: str) -> bool:
        """Whether ``Type/id`` is created by this unit of work (no stored resource can refer to it)."""
        kind, _, ident = reference.partition("/")
        staged = self._staged.get((kind, ident))
        return reference in self._created or (staged is not None and staged.previous_vid is None)

    def pending_resource(self, reference: str) -> dict[str, Any] | None:
        """The resource at ``Type/id`` as this unit of work will leave it, if it writes it."""
        kind, _, ident = reference.partition("/")
        staged = self._staged.get((kind, ident))
        if staged is not None:
            return staged.resource
        return self._announced.get(reference)

    def pending_resources(self) -> dict[str, dict[str, Any]]:
        """Every resource this unit of work will leave in the store, by ``Type/id``."""
        found = dict(self._announced)
        for (kind, ident), write in self._staged.items():
            if write.resource is not None:
                found[f"{kind}/{ident}"] = write.resource
        return found

    def pending_about(self, subject: str) -> dict[str, dict[str, Any]]:
        """The :meth:`pending_resources` whose ``subject`` is the reference ``subject`` (``Patient/1``), found
        through an index kept as resources are staged and announced, not by a walk over every one of them (a bulk
        load's batch checks each of its risk scores against its patient's pending resources)."""
        found: dict[str, dict[str, Any]] = {}
        for reference in self._about.get(subject, ()):
            resource = self.pending_resource(reference)  # the index keeps names a later version no longer has
            if resource is not None and _subject(resource) == subject:
                found[reference] = resource
        return found

    def _index_subject(self, reference: str, resource: dict[str, Any] | None) -> None:
        subject = _subject(resource)
        if subject is not None:
            self._about.setdefault(subject, {})[reference] = None

    def stamp_after(self, previous: StoredVersion | None) -> datetime:
        """``meta.lastUpdated`` of the version replacing ``previous``: this unit of work's time, but always later
        than ``previous``'s. The time is taken when the unit of work starts, before its transaction's snapshot
        reads ``previous``: a concurrent writer that started later may have committed ``previous`` with a later
        time (and clocks of several server nodes differ). Later writes of this unit of work keep the moved time."""
        if previous is not None and previous.last_updated >= self.last_updated:
            self.last_updated = previous.last_updated + _ONE_MS
        return self.last_updated

    def mint_id(self) -> str:
        """A new id for a resource this unit of work creates. Nothing stored before can name it (a random UUID), which
        lets the report row of a Patient so created be made from this unit of work's own writes."""
        minted = new_id()
        self._minted.add(minted)
        return minted

    def touched(self, resource_type: str, resource_id: str) -> bool:
        return (resource_type, resource_id) in self._staged

    def stage(self, write: ResourceWrite) -> StoredVersion:
        self._staged[(write.type, write.id)] = write
        self._unflushed.append(write)
        self._index_subject(f"{write.type}/{write.id}", write.resource)
        return write.version()

    def record_audit(self, document: dict[str, Any]) -> None:
        """Stage an AuditEvent document, written with the next flush in this transaction."""
        self._audit.append(document)

    @property
    def audited(self) -> bool:
        return bool(self._audit)

    async def flush(self) -> None:
        """Store the staged writes and the claims of their conditional creates (per center, see
        ``ResourceStore.apply``)."""
        if self._claims or self._unflushed:
            claims, self._claims = self._claims, []
            writes, self._unflushed = self._unflushed, []
            # a center read before an earlier flush of this unit of work wrote the resource may have changed since:
            # read it again (what this flush writes is not stored yet: the rules read the stored version's)
            known = {key: center for key, center in self._centers.items() if key not in self._flushed}
            self._report_rows.merge(await self.store.apply(self.ctx, writes, self.session, claims, known))
            self._flushed.update((w.type, w.id) for w in writes)
            if any(w.type in CONFORMANCE_TYPES for w in writes):
                await bump_epoch(self.store, self.session)
                self.epoch = None
        if self._audit and self.services.audit_log is not None:
            documents, self._audit = self._audit, []
            await self.services.audit_log.write(documents, self.session)

    async def refresh_report_rows(self) -> None:
        """Recompute the report row of each Patient the flushed writes touched, once per unit of work (after its
        last flush, in its transaction: ``storage/report_rows.py``)."""
        pending, self._report_rows = self._report_rows, PendingRows()
        await self.store.report_rows.refresh(pending, self.session, self._minted)

    def staged_writes(self) -> list[ResourceWrite]:
        return list(self._staged.values())


def _subject(resource: dict[str, Any] | None) -> str | None:
    subject = resource.get("subject") if isinstance(resource, dict) else None
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference if isinstance(reference, str) else None


async def run_in_transaction(ctx: RequestContext, services: Services,
                             work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run ``work`` in a fresh unit of work inside one MongoDB transaction (re-run on transient errors), then
    apply what the commit changes for this process (``Services.after_commit``: a stored SearchParameter is used
    at once), so no caller can forget it."""

    async def attempt(session: DbSession) -> T:
        uow = UnitOfWork(ctx, services, session)
        result = await work(uow)
        if not uow.audited and uow.staged_writes():
            audit_event.stage(uow, None, 200)
        await uow.flush()
        await uow.refresh_report_rows()
        return result

    result = await services.store.run_transaction(attempt)
    await services.after_commit(result)
    return result
