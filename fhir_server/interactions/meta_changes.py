"""``$meta-add`` and ``$meta-delete`` (https://hl7.org/fhir/R4/resource-operation-meta-add.html,
https://hl7.org/fhir/R4/resource-operation-meta-delete.html): profiles, tags and security labels added to or
removed from a resource's current version.

- ``POST [type]/[id]/$meta-add`` and ``POST [type]/[id]/$meta-delete`` with a ``Parameters`` holding one ``meta``
  (valueMeta); the answer is a ``Parameters`` whose ``return`` is the resulting Meta. On
  ``[type]/[id]/_history/[vid]``, the same changes that version (R4: "can also be used on historical entries"),
  404 and 410 as a vread.
- Profiles, tags and security labels are sets: a profile is named by its URL, a tag or security label by its
  system and code (version and display are ignored when matching). Adding what is there, or removing what is not,
  changes nothing and writes nothing.
- As R4 asks, no new version is created: the meta is changed in place, in the version's current and history
  documents (``ResourceStore.replace_meta``), so ``versionId``, ``lastUpdated`` and the ETag stay.
- The caller needs what an update needs (``u`` on the type, the resource in its center). A profile added is a
  claim of conformance, so the resource is validated against each added profile the server knows, as a write
  claiming it would be (422 when it does not conform); an unknown profile is stored unchecked, as on a write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.conformance import bump_epoch
from fhir_server.context import RequestContext
from fhir_server.errors import Gone, InvalidRequest, NotFound, UnprocessableEntity
from fhir_server.interactions.enforcement import validation_issues, validator_for
from fhir_server.interactions.read import readable_version
from fhir_server.interactions.unit_of_work import UnitOfWork, run_in_transaction
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import CONFORMANCE_TYPES
from fhir_server.services import Services

ADD_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-meta-add"
DELETE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-meta-delete"
CODED = ("tag", "security")  # Coding lists of Meta, each a set by system and code

Meta = dict[str, Any]
Change = Callable[[Meta, Meta], Meta]


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "meta-add", meta_add, frozenset({"instance"}), methods=frozenset({"POST"}), definition=ADD_DEFINITION,
        on_versions=True, documentation="Add profiles, tags and security labels to a resource, without a new version"))
    registry.register(OperationSpec(
        "meta-delete", meta_delete, frozenset({"instance"}), methods=frozenset({"POST"}),
        definition=DELETE_DEFINITION, on_versions=True,
        documentation="Remove profiles, tags and security labels from a resource, without a new version"))


async def meta_add(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    return await _change_meta(ctx, services, op, added)


async def meta_delete(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    return await _change_meta(ctx, services, op, removed)


def given_meta(op: OperationRequest) -> Meta:
    """The ``meta`` parameter, checked: a list of profile URLs, lists of Codings with a system or a code."""
    value = next((p.get("valueMeta") for p in op.parameters() if p.get("name") == "meta"), None)
    if not isinstance(value, dict):
        raise InvalidRequest(f"${op.name} needs a Parameters body with a 'meta' parameter (valueMeta)",
                             code="required", expression=("meta",))
    profiles = value.get("profile", [])
    if not isinstance(profiles, list) or not all(isinstance(p, str) and p for p in profiles):
        raise InvalidRequest("meta.profile must be a list of URLs", code="invalid", expression=("meta.profile",))
    for element in CODED:
        codings = value.get(element, [])
        if not isinstance(codings, list) or not all(isinstance(c, dict) and _key(c) != ("", "") for c in codings):
            raise InvalidRequest(f"meta.{element} must be a list of Codings, each with a system or a code",
                                 code="invalid", expression=(f"meta.{element}",))
    return value


def _key(coding: dict[str, Any]) -> tuple[str, str]:
    system, code = coding.get("system", ""), coding.get("code", "")
    return (system if isinstance(system, str) else "", code if isinstance(code, str) else "")


def added(meta: Meta, given: Meta) -> Meta:
    """``meta`` with what ``given`` holds and it lacks appended (existing elements keep their order)."""
    out = dict(meta)
    profiles = list(meta.get("profile", []))
    profiles += [p for p in dict.fromkeys(given.get("profile", [])) if p not in profiles]
    if profiles:
        out["profile"] = profiles
    for element in CODED:
        codings = list(meta.get(element, []))
        held = {_key(c) for c in codings}
        for coding in given.get(element, []):
            if _key(coding) not in held:
                codings.append(coding)
                held.add(_key(coding))
        if codings:
            out[element] = codings
    return out


def removed(meta: Meta, given: Meta) -> Meta:
    """``meta`` without the profiles, tags and security labels ``given`` names (an emptied list goes)."""
    out = dict(meta)
    gone = set(given.get("profile", []))
    out["profile"] = [p for p in meta.get("profile", []) if p not in gone]
    for element in CODED:
        names = {_key(c) for c in given.get(element, [])}
        out[element] = [c for c in meta.get(element, []) if _key(c) not in names]
    return {key: value for key, value in out.items() if value != [] or key not in ("profile", *CODED)}


async def _change_meta(ctx: RequestContext, services: Services, op: OperationRequest,
                       change: Change) -> OperationResponse:
    assert op.resource_type is not None and op.resource_id is not None
    given = given_meta(op)
    resource_type, resource_id = op.resource_type, op.resource_id

    async def work(uow: UnitOfWork) -> Meta:
        latest = await uow.current(resource_type, resource_id)
        if latest is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        version = latest if op.version_id is None else await readable_version(
            uow.ctx, uow.services, resource_type, resource_id, op.version_id, session=uow.session)
        if version.deleted or version.resource is None:
            raise Gone(f"{resource_type}/{resource_id} was deleted", headers={"ETag": version.etag})
        before: Meta = dict(version.resource.get("meta") or {})
        after = change(before, given)
        if after == before:
            return before
        resource = {**version.resource, "meta": after}  # meta keeps its place among the elements
        await _check_added_profiles(uow, resource, [p for p in after.get("profile", [])
                                                    if p not in before.get("profile", [])])
        await uow.store.replace_meta(uow.ctx, version, resource, uow.services.index_values(resource), uow.session,
                                     current=version.vid == latest.vid)
        if resource_type in CONFORMANCE_TYPES:  # every process's cached copy is now stale
            await bump_epoch(uow.store, uow.session)
        return after

    meta = await run_in_transaction(ctx, services, work)
    return OperationResponse(200, {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]})


async def _check_added_profiles(uow: UnitOfWork, resource: dict[str, Any], profiles: list[str]) -> None:
    """422 when the resource does not conform to an added profile the server knows (enforcement.py's judgement,
    as for a write claiming it)."""
    if not profiles:
        return
    validator = await validator_for(uow)
    known = tuple(p for p in profiles if validator.conformance.structure_definition(p) is not None)
    if not known:
        return
    issues = await validation_issues(uow, resource, extra_profiles=known, only_extra=True)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise UnprocessableEntity(issues=errors)
