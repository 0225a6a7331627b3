"""Reading ahead, in one query per type, the stored versions a unit of work is about to ask for one at a time.

A bulk load's batch and a transaction Bundle of updates name many stored resources: the ids they update (the
version each update follows, https://hl7.org/fhir/R4/http.html#update) and the resources they refer to (the
profiles' reference checks, the write checks, the center rules). Asked one by one, each is a query of its own
inside the transaction; read here with one ``$in`` per type (``ResourceStore.current_many``, the caller's access
filter applied as :meth:`UnitOfWork.current` applies it), in the same transaction: the answers those queries
would have given. What the unit of work writes itself is always looked at first (``UnitOfWork.current``,
``pending_resource``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.interactions.references import RELATIVE, collect_references
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.resources import SUPPORTED_TYPES


def wanted_ids(resources: Iterable[Any], targets: Iterable[tuple[str, str]] = ()) -> dict[str, set[str]]:
    """Per type, the ids of ``targets`` ((type, id) pairs a unit of work will update) and those the
    ``resources`` refer to (``Type/id`` references)."""
    ids: dict[str, set[str]] = {}
    for kind, ident in targets:
        if kind in SUPPORTED_TYPES:
            ids.setdefault(kind, set()).add(ident)
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        for reference in collect_references(resource, set()):
            match = RELATIVE.match(reference)
            if match and match.group(1) in SUPPORTED_TYPES:
                ids.setdefault(match.group(1), set()).add(match.group(2))
    return ids


async def prime(uow: UnitOfWork, wanted: dict[str, set[str]], *, at_least: int = 1) -> None:
    """Read the current versions of ``wanted`` into ``uow`` (``UnitOfWork.prime``), with their centers (the
    center rules of its flush need not read them again); a type with fewer than ``at_least`` ids is left to be
    read when asked (one id read ahead costs the query it saves, and the query may never be asked)."""
    for kind, ids in wanted.items():
        if len(ids) < at_least:
            continue
        centers: dict[str, str | None] = {}
        uow.prime(kind, await uow.store.current_many(uow.ctx, kind, sorted(ids), session=uow.session,
                                                     centers=centers))
        uow.remember_centers_of(kind, centers)
