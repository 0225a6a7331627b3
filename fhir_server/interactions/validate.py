"""``$validate`` at type and instance level (https://hl7.org/fhir/R4/resource-operation-validate.html).

``POST [base]/[type]/$validate`` and ``POST|GET [base]/[type]/[id]/$validate``. The body is the resource, or a
``Parameters`` with ``resource``, ``mode`` and ``profile`` (which may also come from the query string). The
answer is ``200`` with an OperationOutcome whether or not the resource is valid (an ``information`` issue
"no issues" when clean); a 4xx means the validation itself could not be done (bad parameters, unknown
instance or profile). Nothing is stored: the judgement runs in a read-only session through the very function
the write path uses (:func:`fhir_server.interactions.enforcement.validation_issues`), after the same
structural checks a write does (``resources.check_structure``), so the outcome lists exactly what a create or
update of the same content would report -- rule table, claimed profiles, write checks (e.g. risk scores), with
references resolved from the store.

Modes (ValueSet resource-validation-mode, https://hl7.org/fhir/R4/valueset-resource-validation-mode.html):

* none: general validation -- structure, then what a write would check (rule table, claimed profiles,
  write checks), plus the ``profile`` parameter if given;
* ``create``: the same (uniqueness of conditional creates is not checked: it depends on ``If-None-Exist``);
* ``update``: instance level only; the body's id, when present, must be the URL's id. A resource that does not
  exist yet is judged as an update-as-create (reported as information);
* ``delete``: instance level only; checks nothing but that the resource exists (404 otherwise): this server
  does not enforce referential integrity on delete, so any existing resource may be deleted;
* ``profile``: structure plus the ``profile`` parameter only (required in this mode).

At instance level without a resource (e.g. ``GET .../Patient/42/$validate``) the stored current version is
validated: useful after a terminology maintainer published a new version of a profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.interactions.enforcement import validation_issues, validator_for
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import check_structure
from fhir_server.services import Services
from fhir_server.validation.core_invariants import core_invariant_issues
from fhir_server.validation.primitives import check_primitive_types

MODES = ("create", "update", "delete", "profile")
DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"


@asynccontextmanager
async def read_only_unit(ctx: RequestContext, services: Services) -> AsyncIterator[UnitOfWork]:
    """A unit of work over a plain session (no transaction): it reads the store, and is never flushed."""
    async with services.store.read_session() as session:
        yield UnitOfWork(ctx, services, session)


VALIDATE_PARAMETERS = frozenset({"resource", "mode", "profile"})


def _submitted_resource(op: OperationRequest) -> dict[str, Any] | None:
    body = op.body
    if body is None:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise InvalidRequest("$validate takes a resource or a Parameters resource as its body", code="structure")
    if body["resourceType"] == "Parameters" and not _is_the_resource(op, body):
        return op.resource_param("resource")
    return dict(body)


def _is_the_resource(op: OperationRequest, parameters: dict[str, Any]) -> bool:
    """A Parameters body of ``Parameters/$validate`` that holds none of the operation's parameters is the resource
    to validate itself (operation-resource-validate.html: the resource is the body, or the ``resource``
    parameter): read as the operation's parameters it would say nothing, and the request would be refused."""
    parts = parameters.get("parameter")
    names = {p.get("name") for p in parts if isinstance(p, dict)} if isinstance(parts, list) else set()
    return op.resource_type == "Parameters" and not names & VALIDATE_PARAMETERS


def _outcome(issues: list[Issue]) -> OperationResponse:
    if not issues:
        issues = [Issue("information", "informational", "No issues detected during validation")]
    return OperationResponse(200, operation_outcome(issues))


async def validate_resource(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """The ``$validate`` handler (type and instance level)."""
    resource_type = op.resource_type
    assert resource_type is not None
    mode, profile = op.param("mode"), op.param("profile")
    if mode is not None and mode not in MODES:
        raise InvalidRequest(f"Unknown $validate mode '{mode}' (expected one of {', '.join(MODES)})",
                             code="value", expression=("mode",))
    if mode in ("update", "delete") and op.level != "instance":
        raise InvalidRequest(f"$validate mode={mode} is for an instance: {resource_type}/[id]/$validate",
                             code="invalid")
    if mode == "profile" and not profile:
        raise InvalidRequest("$validate mode=profile needs the profile parameter", code="required",
                             expression=("profile",))
    resource = _submitted_resource(op)
    async with read_only_unit(ctx, services) as uow:
        current = await uow.current(resource_type, op.resource_id) if op.resource_id else None
        exists = current is not None and not current.deleted
        if mode == "delete":
            if not exists:
                raise NotFound(f"{resource_type}/{op.resource_id} does not exist: there is nothing to delete")
            return _outcome([Issue("information", "informational",
                                   f"{resource_type}/{op.resource_id} exists and may be deleted (this server "
                                   "checks no references on delete)")])
        notes: list[Issue] = []
        if resource is None:
            if op.level != "instance":
                raise InvalidRequest("$validate needs a resource (the body, or the 'resource' parameter)",
                                     code="required", expression=("resource",))
            if not exists or current is None or current.resource is None:
                raise NotFound(f"{resource_type}/{op.resource_id} does not exist and no resource was given")
            resource = dict(current.resource)
        if resource.get("resourceType") != resource_type:
            raise InvalidRequest(f"resourceType '{resource.get('resourceType')}' does not match the URL's type "
                                 f"'{resource_type}'", code="invalid", expression=("resourceType",))
        if op.resource_id is not None:
            if resource.get("id") not in (None, op.resource_id):
                raise InvalidRequest(f"The resource id '{resource.get('id')}' does not match the URL's id "
                                     f"'{op.resource_id}'", code="invalid", expression=(f"{resource_type}.id",))
            resource["id"] = op.resource_id
            if mode == "update" and not exists:
                notes.append(Issue("information", "informational", f"{resource_type}/{op.resource_id} does not "
                                   "exist: an update would create it"))
        if profile:
            validator = await validator_for(uow)
            if validator.conformance.structure_definition(profile) is None:
                raise InvalidRequest(f"Profile {profile} is not known to this server", code="not-found",
                                     expression=("profile",))
        try:
            check_structure(resource, resource_type)
        except InvalidRequest as exc:  # structural errors are the outcome of the validation, not a failure
            return _outcome(notes + exc.issues)
        issues = await validation_issues(uow, resource, extra_profiles=(profile,) if profile else (),
                                         only_extra=mode == "profile")
        # a write drops them; the outcome shows the warnings of the wire format and the R4 invariants (con-3...) too
        notes += [i for i in check_primitive_types(resource) if i.severity == "warning"]
        notes += [i for i in core_invariant_issues(resource) if i.severity != "error"]
    return _outcome(notes + issues)


def register(registry: OperationRegistry) -> None:
    """Offer ``$validate`` on every supported type, at type and instance level."""
    registry.register(OperationSpec(
        "validate", validate_resource, frozenset({"type", "instance"}), methods=frozenset({"GET", "POST"}),
        definition=DEFINITION,
        documentation="Validate a resource (structure, registry rule table, claimed and nominated profiles, "
                      "write checks) without storing it; modes create, update, delete, profile"))
