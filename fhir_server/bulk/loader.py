"""Bulk loading: many independent resources (NDJSON lines, a collection Bundle's entries, ``$import`` input) in
batches, each resource judged exactly as a create or update of its own.

Every resource of a batch goes through the interaction functions of a normal write (``interactions/create.py``,
``interactions/update.py``): structure check, the registry's profiles and rule table, bindings, extension
contexts, the extra write checks, index extraction, versioning. A resource with an ``id`` is an update (an
update-as-create the first time: an export loads back with its ids, and loading the same file again stores no
new versions); one without is a create with a new id. What is batched is the storage: the resources of a batch
share one unit of work, so they are written in one MongoDB transaction with one ``insert_many`` per collection
(``ResourceStore.apply``), and their current versions are read with one query per type first instead of one per
resource. A resource that fails (400, 422...) is reported with its line and staged not at all; the others of
its batch are stored. Should the batch's commit itself fail for a reason that is not transient (the driver
re-runs transient ones), each resource of the batch is tried in a transaction of its own, so one resource never
costs the others.

What needs no database is done ahead (:func:`prepare`: the type, the structure check), so that a caller that
reads batch N+1 while batch N is in MongoDB (``import_operation``) keeps the server's CPU busy during the other's
I/O. Everything the store answers (versions, references, centers, the conformance resources in force) is still
read in the batch's own transaction, after the previous batch committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, InvalidRequest, Issue
from fhir_server.interactions.create import create
from fhir_server.interactions.priming import prime, wanted_ids
from fhir_server.interactions.unit_of_work import UnitOfWork, run_in_transaction
from fhir_server.interactions.update import update
from fhir_server.resources import SUPPORTED_TYPES, check_structure
from fhir_server.services import Services

BATCH_SIZE = 200  # resources per transaction: large enough for bulk inserts, far below MongoDB's 16 MB limits


@dataclass
class LoadItem:
    """One resource to load and where it came from (the line number of its file, 1-based). ``prepared``: its
    type and structure were checked by :func:`prepare` (``refusal``: the error they raised, if any)."""

    line: int
    resource: Any
    prepared: bool = False
    refusal: FhirError | None = None


@dataclass
class LoadResult:
    """What became of one item: stored (``stored``: a new version was written, not an identical resubmission),
    or refused with the OperationOutcome issues of the error."""

    line: int
    reference: str | None = None
    stored: bool = False
    issues: list[Issue] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.issues)


def _resource_type(resource: Any) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InvalidRequest("Not a FHIR resource (a JSON object with a resourceType)", code="structure")
    kind = resource["resourceType"]
    if kind not in SUPPORTED_TYPES:
        raise InvalidRequest(f"Resource type {kind} is not supported by this server", code="not-supported",
                             expression=(f"{kind}",))
    return str(kind)


def _update_id(resource: dict[str, Any]) -> str | None:
    """The id of a resource loaded as an update (update-as-create the first time); None: a create."""
    resource_id = resource.get("id")
    return resource_id if isinstance(resource_id, str) and resource_id else None


def prepare(item: LoadItem) -> None:
    """The checks of :func:`_write_one` that read nothing but the resource, done now: its type and the structure
    check ``create``/``update`` would run first (a pure function of the content: done early or late, the same
    answer). Their error is kept for the item's turn, where it is raised before anything else is looked at."""
    try:
        kind = _resource_type(item.resource)
        check_structure(item.resource, kind, _update_id(item.resource))
    except FhirError as exc:
        item.refusal = exc
    item.prepared = True


async def _write_one(uow: UnitOfWork, item: LoadItem) -> tuple[str, bool]:
    """Create or update the item's resource as its own interaction would; its ``Type/id`` and whether it was
    stored."""
    if item.refusal is not None:
        raise item.refusal
    resource = item.resource
    kind = _resource_type(resource)
    resource_id = _update_id(resource)
    if resource_id is not None:
        result = await update(uow, kind, resource_id, resource, structure_checked=item.prepared)
    else:
        result = await create(uow, kind, resource, structure_checked=item.prepared)
    assert result.version is not None
    return f"{kind}/{result.version.id}", uow.touched(kind, result.version.id)


async def _prime(uow: UnitOfWork, items: list[LoadItem]) -> None:
    """Read, one query per type (not one per resource), the current versions of every id the batch updates and
    of every resource it refers to (``interactions/priming.py``): the updates' versioning, the profiles' reference
    checks, the write checks (a risk score's patient) and the center rules then find them without a query of
    their own."""
    resources = [item.resource for item in items if isinstance(item.resource, dict)
                 and item.resource.get("resourceType") in SUPPORTED_TYPES]
    targets = [(r["resourceType"], r["id"]) for r in resources if isinstance(r.get("id"), str)]
    await prime(uow, wanted_ids(resources, targets))


async def _batch_work(uow: UnitOfWork, items: list[LoadItem]) -> list[LoadResult]:
    results: list[LoadResult] = []
    await _prime(uow, items)
    uow.upcoming = [item.resource for item in items]
    for item in items:
        try:
            reference, stored = await _write_one(uow, item)
        except FhirError as exc:
            results.append(LoadResult(item.line, issues=list(exc.issues)))
            continue
        results.append(LoadResult(item.line, reference, stored))
    return results


async def load_batch(ctx: RequestContext, services: Services, items: list[LoadItem]) -> list[LoadResult]:
    """Load ``items`` (at most ``BATCH_SIZE`` is best) in one transaction; one result per item, in order."""
    if not items:
        return []
    try:
        return await run_in_transaction(ctx, services, lambda uow: _batch_work(uow, items))
    except FhirError:
        if len(items) == 1:
            raise
    results: list[LoadResult] = []
    for item in items:  # the commit failed: find the resource that makes it fail, keep the others
        try:
            results += await load_batch(ctx, services, [item])
        except FhirError as exc:
            results.append(LoadResult(item.line, issues=list(exc.issues)))
    return results
