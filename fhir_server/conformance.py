"""The conformance resources in force (CodeSystem, ValueSet, ConceptMap, StructureDefinition), cached per
process and kept consistent across processes.

Every write of a conformance resource increments an epoch counter in the same MongoDB transaction
(``UnitOfWork.flush``). Before judging a submission, a process reads the epoch (one indexed ``find_one``) and
reloads its cache when the epoch moved, so the very next submission after a terminology maintainer's PUT is
judged by the new version, in every server process, without a restart.

Versions (https://hl7.org/fhir/R4/references.html#canonical): several resources may share a canonical url
with different versions; a bare url means the current one (highest ``active`` version, see
``terminology.service.currency_key``) and ``url|version`` that exact version. A maintainer may publish a new
version as a new resource or as an update of the same resource; in the latter case the earlier version only
survives in history, so versions found there whose ``url|version`` no current resource carries are kept as
*superseded*: resolvable by ``url|version`` only (retired versions stay resolvable), never current. Versions
of a deleted resource are dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.storage.store import DbSession, ResourceStore
from fhir_server.terminology.core import core_terminology
from fhir_server.terminology.service import Terminology

TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
KINDS = (*TERMINOLOGY_TYPES, "StructureDefinition", "SearchParameter")
EPOCH_ID = "conformance-epoch"


class ConformanceCache:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._epoch: tuple[int, str] | None = None
        self._resources: dict[str, list[dict[str, Any]]] = {}
        self._superseded: dict[str, list[dict[str, Any]]] = {}
        self._terminology: Terminology | None = None
        self._lock = asyncio.Lock()
        self._derived: dict[str, Any] = {}

    async def current_epoch(self, session: DbSession | None = None) -> tuple[int, str]:
        """The counter and the token of the epoch document (a document re-created after a wipe gets a new
        token, so a process whose counter happens to match a fresh database still reloads)."""
        return await self.store.read_counter(EPOCH_ID, session)

    async def refresh(self, session: DbSession | None = None, epoch: tuple[int, str] | None = None) -> None:
        """Reload when the epoch moved; ``epoch``: already read in ``session`` (a transaction Bundle reads it with
        its ifNoneExist lookups), else read here."""
        if epoch is None:
            epoch = await self.current_epoch(session)
        if epoch == self._epoch:
            return
        async with self._lock:
            if epoch == self._epoch:
                return
            ctx = RequestContext.system()
            loaded: dict[str, list[dict[str, Any]]] = {}
            live: set[tuple[str, str]] = set()
            for kind in KINDS:
                docs = await self.store.find(ctx, kind, {}, projection={"resource": 1}, session=session)
                loaded[kind] = [d["resource"] for d in docs]
                live.update((kind, d["_id"]) for d in docs)
            self._resources = loaded
            self._superseded = await self._load_superseded(loaded, live, session)
            self._terminology = Terminology((r for k in TERMINOLOGY_TYPES for r in loaded[k]),
                                            (r for k in TERMINOLOGY_TYPES for r in self._superseded[k]),
                                            core_terminology())
            self._derived = {}
            self._epoch = epoch

    async def _load_superseded(self, loaded: dict[str, list[dict[str, Any]]], live: set[tuple[str, str]],
                               session: DbSession | None) -> dict[str, list[dict[str, Any]]]:
        """Earlier versions (from history) of live resources whose url|version no current resource holds."""
        current = {(kind, r.get("url"), r.get("version")) for kind, rs in loaded.items() for r in rs}
        out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        seen: set[tuple[str, str, str]] = set()
        versions = self.store.versions_matching(
            RequestContext.system(), KINDS, {"deleted": False, "resource.version": {"$exists": True}},
            projection={"type": 1, "id": 1, "resource": 1}, session=session)
        async for doc in versions:
            kind, resource = doc["type"], doc["resource"]
            key = (kind, resource.get("url"), resource.get("version"))
            if (kind, doc["id"]) not in live or key in current or key in seen or not resource.get("url"):
                continue
            seen.add(key)
            out[kind].append(resource)
        return out

    @property
    def epoch(self) -> tuple[int, str] | None:
        """The epoch of the resources held (None before the first load)."""
        return self._epoch

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return self._resources.get(kind, [])

    def superseded(self, kind: str) -> list[dict[str, Any]]:
        """Earlier versions replaced in storage, resolvable by ``url|version`` only."""
        return self._superseded.get(kind, [])

    async def terminology(self, session: DbSession | None = None) -> Terminology:
        await self.refresh(session)
        assert self._terminology is not None
        return self._terminology

    def derived(self, key: str) -> Any:
        """A value computed from the current resources (e.g. a built validator), dropped on reload."""
        return self._derived.get(key)

    def remember(self, key: str, value: Any) -> None:
        self._derived[key] = value


async def bump_epoch(store: ResourceStore, session: DbSession) -> None:
    """Move the epoch in the transaction of ``session`` (the one writing a conformance resource)."""
    await store.bump_counter(EPOCH_ID, session)
