"""create and conditional create (https://hl7.org/fhir/R4/http.html#create, #ccreate)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import PreconditionFailed
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.write import stage_version
from fhir_server.resources import check_structure
from fhir_server.storage.documents import StoredVersion


async def create(uow: UnitOfWork, resource_type: str, resource: dict[str, Any], *, if_none_exist: str | None = None,
                 assigned_id: str | None = None, matches: list[dict[str, Any]] | None = None,
                 structure_checked: bool = False) -> InteractionResult:
    """Create ``resource``, a ``resource_type`` (its structure is checked first: 400), with a server-assigned id.

    With ``If-None-Exist`` the criteria are evaluated inside the transaction: one match -> 200 with the
    existing resource and nothing written; several -> 412; none -> create, and touch the criteria's claim
    document so that a concurrent identical create conflicts and is re-run (see ``ResourceStore.claim``).
    ``matches``: what the criteria match, when the caller already looked (a transaction looks up the criteria of
    all its entries at once). ``structure_checked``: the caller ran ``check_structure`` on this very content (a
    transaction checks every entry before validating any, since validation reads the other entries).
    """
    if not structure_checked:
        check_structure(resource, resource_type)
    resource_id = assigned_id or uow.mint_id()
    if if_none_exist:
        existing = matches if matches is not None else await uow.matches(resource_type, if_none_exist)
        if len(existing) > 1:
            raise PreconditionFailed(
                f"If-None-Exist '{if_none_exist}' matches {len(existing)} {resource_type} resources")
        if existing:
            version = StoredVersion.from_current(resource_type, existing[0])
            return InteractionResult(200, version.resource, version)
        uow.claim(resource_type, if_none_exist, f"{resource_type}/{resource_id}")
    return await stage_version(uow, resource, resource_id, "POST", None, 201)
