"""Profile enforcement on every write (https://hl7.org/fhir/R4/validation.html#profile).

A resource is validated against every profile the registry's rule table (``profiles/rules.json``) requires
of it (when the rule table is enforced), the R4 vital signs profile its LOINC code calls for
(https://hl7.org/fhir/R4/observation.html#vitals: base specification, so always), and every profile it claims
in ``meta.profile`` that the server knows; its extensions are checked against their definitions' contexts
(https://hl7.org/fhir/R4/defining-extensions.html#context), profiles or not. All use the conformance resources
in force *in this transaction's snapshot* (so a terminology maintainer's new ValueSet judges the very next
submission, in every server process). A literal reference of a type its element does not name is a warning
(``validation/reference_targets.py``). Errors -> 422 listing every issue; warnings travel with the write's
OperationOutcome. References are resolved within the unit of work (a transaction Bundle's own entries) and
then the store.

:func:`validation_issues` is the whole judgement without raising; the write path (:func:`check_write`) and
``$validate`` (``interactions/validate.py``, https://hl7.org/fhir/R4/resource-operation-validate.html) both use it,
so an OperationOutcome from ``$validate`` lists exactly what a write of the same resource would report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fhir_server.errors import Issue, NotFound, UnprocessableEntity
from fhir_server.interactions.references import RELATIVE, collect_references
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.validation.canonical_targets import canonical_target_issues
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.core import vital_signs
from fhir_server.validation.narrative import narrative_warnings
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.reference_targets import reference_target_issues
from fhir_server.validation.rules import profiles_required_for

if TYPE_CHECKING:
    from fhir_server.interactions.unit_of_work import UnitOfWork

Resolver = Callable[[str], dict[str, Any] | None]
WriteCheck = Callable[["UnitOfWork", dict[str, Any], Resolver], Awaitable[list[Issue]]]
_VALIDATOR = "profile-validator"

async def validator_for(uow: UnitOfWork) -> ProfileValidator:
    """The validator of the conformance resources in force, rebuilt only when they change."""
    cache = uow.services.conformance
    if not uow.conformance_checked:  # once per unit of work: one epoch read per transaction, not per resource
        await uow.services.sync_conformance(uow.session, uow.epoch)
        uow.conformance_checked = True
    validator = cache.derived(_VALIDATOR)
    if validator is None:
        resources = [r for kind in ("StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap")
                          for r in cache.resources(kind)]
        superseded = [r for kind in ("StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap")
                      for r in cache.superseded(kind)]
        validator = ProfileValidator(ConformanceSnapshot(resources, superseded=superseded))
        cache.remember(_VALIDATOR, validator)
    return validator


def profiles_to_check(uow: UnitOfWork, resource: dict[str, Any], validator: ProfileValidator) -> tuple[
        list[str], list[Issue]]:
    """Profiles required by the rule table (when enforced) and by the vital signs table, plus known claimed
    ones; unknown claims warn."""
    wanted = list(profiles_required_for(resource, uow.services.rules)) if uow.services.settings.registry_rules else []
    wanted += [p for p in vital_signs().profiles_for(resource) if p not in wanted]
    notes: list[Issue] = []
    for claimed in (resource.get("meta") or {}).get("profile") or []:
        if claimed in wanted:
            continue
        if validator.conformance.structure_definition(claimed) is None:
            notes.append(Issue("warning", "not-found", f"Profile {claimed} is not known to this server; the "
                               "resource was not validated against it", (f"{resource['resourceType']}.meta.profile",)))
        else:
            wanted.append(claimed)
    return wanted, notes


async def resolver_for(uow: UnitOfWork, resource: dict[str, Any]) -> Resolver:
    """References of ``resource`` resolved from the unit of work first, then the store (one query per type)."""
    found: dict[str, dict[str, Any]] = {}
    missing: dict[str, list[str]] = {}
    for reference in collect_references(resource, set()):
        match = RELATIVE.match(reference)
        if not match:
            continue
        pending = uow.pending_resource(reference)
        if pending is not None:
            found[reference] = pending
            continue
        primed, stored = uow.primed_resource(reference)  # a bulk load reads its batch's references at once
        if not primed:
            missing.setdefault(match.group(1), []).append(match.group(2))
        elif stored is not None:
            found[reference] = stored
    for kind, ids in missing.items():
        if kind not in SUPPORTED_TYPES:
            continue
        for doc in await uow.store.find(uow.ctx, kind, {"_id": {"$in": ids}}, projection={"resource": 1},
                                        session=uow.session):
            found[f"{kind}/{doc['_id']}"] = doc["resource"]
    return found.get


async def validation_issues(uow: UnitOfWork, resource: dict[str, Any], *, extra_profiles: tuple[str, ...] = (),
                            only_extra: bool = False) -> list[Issue]:
    """Every issue a write of ``resource`` would meet: the rule table's, the vital signs and the claimed
    profiles (unless ``only_extra``), ``extra_profiles`` (e.g. ``$validate``'s ``profile`` parameter; an unknown
    one is an error), the use of its extensions, and the extra write checks (``services.write_checks``).
    Raises nothing, stores nothing."""
    validator = await validator_for(uow)
    profiles: list[str] = []
    # warnings: validation/reference_targets.py, and narrative.py's txt-2; errors: a canonical naming a definition
    # of another type (validation/canonical_targets.py)
    issues: list[Issue] = [*reference_target_issues(resource), *narrative_warnings(resource),
                           *canonical_target_issues(resource, validator.conformance.kind_of)]
    if not only_extra:
        profiles, notes = profiles_to_check(uow, resource, validator)
        issues += notes
    for extra in extra_profiles:
        if extra not in profiles:
            profiles.append(extra)  # the validator reports an unknown profile as an error
    resolve = await resolver_for(uow, resource) if profiles else uow.pending_resource
    issues += validator.validate_all(resource, profiles, resolve)  # extension contexts even without profiles
    for check in uow.services.write_checks:
        issues += await check(uow, resource, resolve)
    return issues


async def check_write(uow: UnitOfWork, resource: dict[str, Any]) -> list[Issue]:
    """Validate ``resource`` for storage; raise UnprocessableEntity (422) on errors, return the warnings. A type
    the deployment does not accept (FHIR_ACCEPTED_TYPES) is refused first, as a type the server does not serve."""
    accepted = uow.services.settings.accepted_type_set
    if accepted and resource["resourceType"] not in accepted:
        raise NotFound(f"This server does not accept resources of type '{resource['resourceType']}' "
                       "(FHIR_ACCEPTED_TYPES)", code="not-supported", expression=(resource["resourceType"],))
    issues = await validation_issues(uow, resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise UnprocessableEntity(issues=issues)
    return issues
