"""update, update-as-create and conditional update (https://hl7.org/fhir/R4/http.html#update, #cond-update).

Preconditions (https://hl7.org/fhir/R4/http.html#concurrency, RFC 9110 section 13.1): ``If-Match`` names the
current version (412 otherwise); ``If-None-Match: *`` (or an ETag list) must *not* match the current version:
an update of an existing resource with ``If-None-Match: *`` is 412, an update of a new (or deleted) id creates it.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import InvalidRequest, PreconditionFailed
from fhir_server.interactions.create import create
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.versioning import content_equal, etag_matches, parse_etag
from fhir_server.interactions.write import stage_version
from fhir_server.resources import check_structure
from fhir_server.storage.documents import StoredVersion


def check_if_match(current: StoredVersion | None, if_match: str | None) -> None:
    """http.html#concurrency and RFC 9110 13.1.1: ``If-Match`` names the current version (one ETag, or a list of
    them), else 412; ``*`` asks only that the resource exist (an update that must not create)."""
    if if_match is None:
        return
    exists = current is not None and not current.deleted
    if if_match.strip() == "*":
        if not exists:
            raise PreconditionFailed("If-Match *: there is no current version to update or delete")
        return
    expected = {parse_etag(tag) for tag in if_match.split(",")}
    if current is None or current.deleted or current.vid not in expected:
        found = "no current version" if current is None or current.deleted else f'W/"{current.vid}"'
        raise PreconditionFailed(f"If-Match {if_match} does not match the current version ({found})")


def check_if_none_match(current: StoredVersion | None, if_none_match: str | None) -> None:
    """RFC 9110 13.1.2: on a write, an ``If-None-Match`` that matches the current version fails (412)."""
    if if_none_match is None or current is None or current.deleted:
        return
    if etag_matches(if_none_match, current.vid):
        raise PreconditionFailed(f"If-None-Match {if_none_match}: {current.type}/{current.id} exists "
                                 f'(version W/"{current.vid}")')


async def update(uow: UnitOfWork, resource_type: str, resource_id: str, resource: dict[str, Any], *,
                 if_match: str | None = None, if_none_match: str | None = None, method: str = "PUT",
                 structure_checked: bool = False) -> InteractionResult:
    """Store ``resource`` as the next version of ``resource_type/resource_id``; create it with this id if it is
    new. Its structure, type and id are checked first (400; ``structure_checked``: see ``create``).

    Resubmitting identical content (an EHR retry) stores no new version and answers 200 with the current one.
    """
    if not structure_checked:
        check_structure(resource, resource_type, resource_id)
    current = await uow.current(resource_type, resource_id)
    check_if_match(current, if_match)
    check_if_none_match(current, if_none_match)
    if current is not None and is_unchanged(current, resource):
        return InteractionResult(200, current.resource, current)
    status = 201 if current is None or current.deleted else 200
    return await stage_version(uow, resource, resource_id, method, current, status)


def is_unchanged(current: StoredVersion, resource: dict[str, Any]) -> bool:
    """Whether an update of ``current`` with ``resource`` stores nothing new (identical content)."""
    return not current.deleted and content_equal(current.resource, {**resource, "id": current.id})


def version_after_update(current: StoredVersion | None, resource: dict[str, Any]) -> int:
    """The versionId :func:`update` leaves current when it stores ``resource`` over ``current``."""
    if current is None:
        return 1
    return current.vid if is_unchanged(current, resource) else current.vid + 1


def check_matched_id(resource: dict[str, Any], match_id: str) -> None:
    """A conditional update's body may omit the id, or carry the id of the resource the criteria match (400)."""
    body_id = resource.get("id")
    if body_id is not None and body_id != match_id:
        raise InvalidRequest(
            f"The resource id '{body_id}' differs from the id '{match_id}' of the resource the criteria match",
            code="invalid", expression=(f"{resource['resourceType']}.id",))


async def conditional_update(uow: UnitOfWork, resource_type: str, criteria: str, resource: dict[str, Any], *,
                             if_match: str | None = None, if_none_match: str | None = None) -> InteractionResult:
    """Update the one resource ``criteria`` match (412 for several), or create one (checked first: 400)."""
    check_structure(resource, resource_type)
    matches = await uow.matches(resource_type, criteria)
    if len(matches) > 1:
        raise PreconditionFailed(f"Conditional update '{criteria}' matches {len(matches)} resources")
    body_id = resource.get("id")
    if matches:
        match_id = matches[0]["_id"]
        check_matched_id(resource, match_id)
        return await update(uow, resource_type, match_id, resource, if_match=if_match, if_none_match=if_none_match,
                            structure_checked=True)
    if body_id is not None:  # update-as-create with the client's id, claimed like a conditional create
        uow.claim(resource_type, criteria, f"{resource_type}/{body_id}")
        return await update(uow, resource_type, body_id, resource, if_match=if_match, if_none_match=if_none_match,
                            structure_checked=True)
    return await create(uow, resource_type, resource, if_none_exist=criteria, structure_checked=True)
