"""The conformance resources in force (CodeSystem, ValueSet, ConceptMap, StructureDefinition), cached per
process and kept consistent across processes.

Every write of a conformance resource increments an epoch counter in the same MongoDB transaction
(``UnitOfWork.flush``). Before judging a submission, a process reads the epoch (one indexed ``find_one``) and
reloads its cache when the epoch moved, so the very next submission after a terminology maintainer's PUT is
judged by the new version, in every server process, without a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from fhir_server.context import RequestContext
from fhir_server.storage.documents import COUNTERS
from fhir_server.storage.store import ResourceStore
from fhir_server.terminology.service import Terminology

TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
EPOCH_ID = "conformance-epoch"


class ConformanceCache:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._epoch: int | None = None
        self._resources: dict[str, list[dict[str, Any]]] = {}
        self._terminology: Terminology | None = None
        self._lock = asyncio.Lock()
        self._derived: dict[str, Any] = {}

    async def current_epoch(self, session: AsyncClientSession | None = None) -> int:
        doc = await self.store.db[COUNTERS].find_one({"_id": EPOCH_ID}, session=session)
        return int(doc["n"]) if doc else 0

    async def refresh(self, session: AsyncClientSession | None = None) -> None:
        epoch = await self.current_epoch(session)
        if epoch == self._epoch:
            return
        async with self._lock:
            if epoch == self._epoch:
                return
            ctx = RequestContext.system()
            loaded: dict[str, list[dict[str, Any]]] = {}
            for kind in (*TERMINOLOGY_TYPES, "StructureDefinition"):
                docs = await self.store.find(ctx, kind, {}, projection={"resource": 1}, session=session)
                loaded[kind] = [d["resource"] for d in docs]
            self._resources = loaded
            self._terminology = Terminology(r for k in TERMINOLOGY_TYPES for r in loaded[k])
            self._derived = {}
            self._epoch = epoch

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return self._resources.get(kind, [])

    async def terminology(self, session: AsyncClientSession | None = None) -> Terminology:
        await self.refresh(session)
        assert self._terminology is not None
        return self._terminology

    def derived(self, key: str) -> Any:
        """A value computed from the current resources (e.g. a built validator), dropped on reload."""
        return self._derived.get(key)

    def remember(self, key: str, value: Any) -> None:
        self._derived[key] = value


async def bump_epoch(store: ResourceStore, session: AsyncClientSession) -> None:
    await store.db[COUNTERS].update_one({"_id": EPOCH_ID}, {"$inc": {"n": 1}}, upsert=True, session=session)
