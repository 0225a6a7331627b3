"""Shared steps of the write interactions: stage a new version of a resource."""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.versioning import stamp
from fhir_server.storage.documents import ResourceWrite, StoredVersion


def stage_version(uow: UnitOfWork, resource: dict[str, Any], resource_id: str, method: str,
                  previous: StoredVersion | None) -> StoredVersion:
    """Stamp ``resource`` as the next version after ``previous`` (None: a new resource) and stage it."""
    vid = previous.vid + 1 if previous is not None else 1
    stored = stamp(resource, resource_id, vid, uow.last_updated)
    write = ResourceWrite(
        type=stored["resourceType"], id=resource_id, vid=vid, last_updated=uow.last_updated, method=method,
        resource=stored, search_values=uow.services.index_values(stored),
        previous_vid=previous.vid if previous is not None else None,
    )
    return uow.stage(write)


def stage_tombstone(uow: UnitOfWork, previous: StoredVersion) -> StoredVersion:
    write = ResourceWrite(
        type=previous.type, id=previous.id, vid=previous.vid + 1, last_updated=uow.last_updated,
        method="DELETE", resource=None, previous_vid=previous.vid,
    )
    return uow.stage(write)
