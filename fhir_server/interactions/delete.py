"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete, #cdelete).

A delete stores a tombstone version (history keeps every earlier version); reads then answer 410 Gone.
Deleting a resource that does not exist (it never did, or is already deleted) changes nothing and answers 204:
http.html#delete says the server should answer a successful deletion, "or if the resource does not exist at
all", with 200 or 204 -- a retried delete must not look like a failure. An unknown *type* is still 404.

Preconditions (RFC 9110 13.1, http.html#concurrency): an ``If-Match`` naming another version than the current one,
or sent for a resource with no current version, is a 412 and deletes nothing; so is an ``If-None-Match`` that
matches the current version.
"""

from __future__ import annotations

from fhir_server.errors import PreconditionFailed
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.update import check_if_match, check_if_none_match
from fhir_server.interactions.write import stage_tombstone


async def delete(uow: UnitOfWork, resource_type: str, resource_id: str, *, if_match: str | None = None,
                 if_none_match: str | None = None) -> InteractionResult:
    current = await uow.current(resource_type, resource_id)
    check_if_match(current, if_match)
    check_if_none_match(current, if_none_match)
    if current is None or current.deleted:  # nothing to delete: changes nothing, stores nothing
        return InteractionResult(204, None, None)
    version = stage_tombstone(uow, current)
    return InteractionResult(204, None, version)


async def conditional_delete(uow: UnitOfWork, resource_type: str, criteria: str, *, if_match: str | None = None,
                             if_none_match: str | None = None) -> InteractionResult:
    matches = await uow.matches(resource_type, criteria)
    if len(matches) > 1:
        raise PreconditionFailed(f"Conditional delete '{criteria}' matches {len(matches)} resources")
    if not matches:
        check_if_match(None, if_match)  # a version named of nothing: 412
        return InteractionResult(204, None, None)
    return await delete(uow, resource_type, matches[0]["_id"], if_match=if_match, if_none_match=if_none_match)
