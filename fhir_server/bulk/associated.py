"""``includeAssociatedData`` (Bulk Data IG 2.0, export.html#query-parameters): the Provenance of what an export
wrote, as one more output of type Provenance after every type's files.

- ``RelevantProvenanceResources``: every Provenance whose ``target`` names a resource the export wrote;
- ``LatestProvenanceResources``: for each resource the export wrote, the most recent of those (by ``recorded``).

A target counts when it is a literal reference to this server (``Type/id``, versioned or not, relative or absolute
on its base) and the resource is one the export's own query of its type finds (``bulk/queries.py``: the level's
scope, ``_since``'s window, the type's ``_typeFilter``), through the caller's access filter, as its files were
written. A Provenance that the export's Provenance type already wrote (``_type`` naming Provenance) is not
written again. The Provenance collection is read once, a batch at a time; ``Latest`` keeps one (recorded, id)
per target in memory, then reads the chosen ones back by id: the cost follows the Provenance held, not the
size of the export.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fhir_server.bulk.jobs import ExportJob
from fhir_server.bulk.params import RELEVANT_PROVENANCE
from fhir_server.bulk.queries import type_query
from fhir_server.bulk.scope import all_of
from fhir_server.context import RequestContext
from fhir_server.services import Services

PROVENANCE = "Provenance"
BATCH_SIZE = 500
_LOCAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_EARLIEST = datetime.min.replace(tzinfo=UTC)

Key = tuple[str, str]
Write = Callable[[dict[str, Any]], Awaitable[None]]


async def write_associated_provenance(ctx: RequestContext, services: Services, job: ExportJob,
                                      patient_ids: list[str] | None, write: Write) -> None:
    """Write (``write``) the Provenance ``job.associated`` asks for (module docstring)."""
    every = RELEVANT_PROVENANCE in job.associated
    latest: dict[Key, tuple[datetime, str]] = {}  # target -> its most recent Provenance so far (recorded, id)
    batch: list[dict[str, Any]] = []
    queries = _TypeQueries(ctx, services, job, patient_ids)

    async def settle(provenances: list[dict[str, Any]]) -> None:
        for provenance, targets in await _associated(ctx, services, queries, job.types, provenances):
            if every:
                await write(provenance)
                continue
            recorded = _recorded(provenance)
            for target in targets:
                if target not in latest or recorded > latest[target][0]:
                    latest[target] = (recorded, provenance["id"])

    async for doc in services.store.iterate(ctx, PROVENANCE, {}, batch_size=BATCH_SIZE, projection={"resource": 1}):
        batch.append(doc["resource"])
        if len(batch) >= BATCH_SIZE:
            await settle(batch)
            batch = []
    await settle(batch)
    chosen = sorted({ident for _, ident in latest.values()})
    for start in range(0, len(chosen), BATCH_SIZE):
        found = await services.store.current_many(ctx, PROVENANCE, chosen[start:start + BATCH_SIZE])
        for version in found.values():
            if version is not None and version.resource is not None:
                await write(version.resource)


class _TypeQueries:
    """The export's query of each type (``bulk/queries.py``), compiled once for every batch of Provenance (a
    ``_typeFilter`` with a chain or ``_has`` reads the store to compile)."""

    def __init__(self, ctx: RequestContext, services: Services, job: ExportJob,
                 patient_ids: list[str] | None) -> None:
        self._args = (ctx, services, job)
        self._patient_ids = patient_ids
        self._compiled: dict[str, dict[str, Any]] = {}

    async def of(self, resource_type: str) -> dict[str, Any]:
        if resource_type not in self._compiled:
            self._compiled[resource_type] = await type_query(*self._args, resource_type, self._patient_ids)
        return self._compiled[resource_type]


async def _associated(ctx: RequestContext, services: Services, queries: _TypeQueries, types: list[str],
                      provenances: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Key]]]:
    """Each Provenance of ``provenances`` that targets an exported resource, with those targets; those the
    export's own Provenance files hold are left out."""
    kinds = set(types) - {PROVENANCE}
    targets = [[key for key in _keys(p.get("target"), ctx.base_url) if key[0] in kinds] for p in provenances]
    exported = await _exported(ctx, services, queries, [key for keys in targets for key in keys])
    written = set()
    if PROVENANCE in types:
        written = {key[1] for key in await _exported(ctx, services, queries,
                                                     [(PROVENANCE, p["id"]) for p in provenances])}
    out = []
    for provenance, keys in zip(provenances, targets, strict=True):
        found = [key for key in keys if key in exported]
        if found and provenance["id"] not in written:
            out.append((provenance, found))
    return out


async def _exported(ctx: RequestContext, services: Services, queries: _TypeQueries,
                    keys: Iterable[Key]) -> set[Key]:
    """Which of ``keys`` the export's query of their type finds: one query per type."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for kind, ident in keys:
        by_type[kind].add(ident)
    found: set[Key] = set()
    for kind, ids in by_type.items():
        query = all_of(await queries.of(kind), {"_id": {"$in": sorted(ids)}})
        found |= {(kind, doc["_id"]) for doc in await services.store.find(ctx, kind, query, projection={"_id": 1})}
    return found


def _keys(targets: Any, base_url: str) -> list[Key]:
    """The local resources a Provenance's ``target`` references name."""
    out = []
    for target in targets if isinstance(targets, list) else []:
        reference = target.get("reference") if isinstance(target, dict) else None
        if not isinstance(reference, str):
            continue
        if reference.startswith(base_url + "/"):
            reference = reference[len(base_url) + 1:]
        match = _LOCAL.match(reference)
        if match:
            out.append((match.group(1), match.group(2)))
    return out


def _recorded(provenance: dict[str, Any]) -> datetime:
    """``recorded`` (1..1 in R4) as an aware datetime; the earliest possible when unreadable."""
    try:
        moment = datetime.fromisoformat(str(provenance.get("recorded", "")).replace("Z", "+00:00"))
    except ValueError:
        return _EARLIEST
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
