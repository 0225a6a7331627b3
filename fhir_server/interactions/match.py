"""``POST [base]/Patient/$match`` (https://hl7.org/fhir/R4/patient-operation-match.html): the registry's patients
that may be the one described, most likely first, so that an EHR can find the record it already submitted before
it sends a duplicate.

The candidates are the Patients the caller may read (two searches through the store, under its access filter)
that share an identifier (``system|value``) with the resource given, or its family name and birth date. Each is
graded, deterministically:

- **certain** (score 1.0): an identifier in common, and neither birth date nor gender contradicts;
- **probable** (0.8): an identifier in common but a contradiction (a mistyped birth date, or an identifier
  reused), or no identifier but family name, given name and birth date all the same (0.9-1.0);
- **possible** (0.7-0.8): family name and birth date the same, no identifier in common.

Names compare case- and accent-insensitively, as string search does. The answer is a ``searchset`` Bundle, best
score first (then by id), each entry with ``search.score`` and the ``match-grade`` extension. ``count`` caps the
entries; ``onlyCertainMatches=true`` returns the certain match only when there is exactly one (the operation:
"if there are multiple potential matches, the match should not return the results"). A resource with neither an
identifier nor a family name and birth date finds nothing, and the Bundle says why in an OperationOutcome entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, operation_outcome
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.search import compiled_filter
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.search.model import escape_text
from fhir_server.search.values import normalize_text
from fhir_server.services import Services

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-match"
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
CANDIDATES = 100  # read at most this many Patients per search: a description matching more is no description
_SAME_FAMILY, _SAME_GIVEN, _SAME_BIRTH_DATE, _SAME_GENDER = 0.35, 0.2, 0.35, 0.1
_UNKNOWN_GENDERS = frozenset({None, "unknown"})


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "match", match, frozenset({"type"}), types=frozenset({"Patient"}), methods=frozenset({"POST"}),
        definition=DEFINITION,
        documentation="The Patients that may be the one given (resource; onlyCertainMatches, count), graded "
                      "certain, probable or possible"))


@dataclass(frozen=True)
class Graded:
    score: float
    grade: str
    document: dict[str, Any]


async def match(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    described = op.resource_param("resource")
    if described is None or described.get("resourceType") != "Patient":
        raise InvalidRequest("$match needs a Parameters with a 'resource' that is a Patient", code="required",
                             expression=("resource",))
    only_certain = _boolean(op, "onlyCertainMatches")
    count = _count(op, services.settings.max_count)
    searches = _searches(described)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 0,
                              "link": [{"relation": "self", "url": ctx.url("Patient", "$match")}]}
    if not searches:
        advice = Issue("information", "incomplete", "Nothing to match on: give an identifier (system and value), "
                                                    "or a family name and a birth date")
        return OperationResponse(200, with_entries(bundle, [_outcome_entry(advice)]))
    found: dict[str, dict[str, Any]] = {}
    for params in searches:
        query = await compiled_filter(ctx, services, "Patient", params)
        for doc in await services.store.find(ctx, "Patient", query, limit=CANDIDATES, projection={"sp": 0}):
            found[doc["_id"]] = doc
    graded = sorted((g for g in (_grade(described, doc) for doc in found.values()) if g is not None),
                    key=lambda g: (-g.score, g.document["_id"]))
    if only_certain:
        certain = [g for g in graded if g.grade == "certain"]
        graded = certain if len(certain) == 1 else []
    graded = graded[:count]
    bundle["total"] = len(graded)
    return OperationResponse(200, with_entries(bundle, [_entry(ctx, g) for g in graded]))


def _searches(described: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The plain searches that find the candidates: by identifier, and by family name and birth date."""
    searches: list[list[tuple[str, str]]] = []
    identifiers = sorted(_identifiers(described))
    if identifiers:
        values = ",".join(f"{escape_text(system)}|{escape_text(value)}" for system, value in identifiers)
        searches.append([("identifier", values)])
    families = sorted({f for f, _given in _names(described) if f})
    birth_date = described.get("birthDate")
    if families and isinstance(birth_date, str) and birth_date:
        searches.append([("family", ",".join(escape_text(f) for f in families)),
                         ("birthdate", escape_text(birth_date))])
    return searches


def _grade(described: dict[str, Any], doc: dict[str, Any]) -> Graded | None:
    candidate = doc.get("resource") or {}
    contradicts = _dates_contradict(described.get("birthDate"), candidate.get("birthDate")) or (
        described.get("gender") not in _UNKNOWN_GENDERS and candidate.get("gender") not in _UNKNOWN_GENDERS
        and described.get("gender") != candidate.get("gender"))
    if _identifiers(described) & _identifiers(candidate):
        return Graded(0.8, "probable", doc) if contradicts else Graded(1.0, "certain", doc)
    if contradicts:
        return None
    score = _demographic_score(described, candidate)
    if score >= 0.9:
        return Graded(score, "probable", doc)
    if score >= 0.7:
        return Graded(score, "possible", doc)
    return None


def _demographic_score(described: dict[str, Any], candidate: dict[str, Any]) -> float:
    names, others = _names(described), _names(candidate)
    score = 0.0
    if {f for f, _ in names if f} & {f for f, _ in others if f}:
        score += _SAME_FAMILY
    if {g for _, given in names for g in given} & {g for _, given in others for g in given}:
        score += _SAME_GIVEN
    if described.get("birthDate") and described.get("birthDate") == candidate.get("birthDate"):
        score += _SAME_BIRTH_DATE
    if described.get("gender") not in _UNKNOWN_GENDERS and described.get("gender") == candidate.get("gender"):
        score += _SAME_GENDER
    return round(score, 2)


def _identifiers(patient: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for identifier in _objects(patient.get("identifier")):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            found.add((system, value))
    return found


def _names(patient: dict[str, Any]) -> list[tuple[str | None, frozenset[str]]]:
    """(normalized family, normalized given names) of each of the patient's names."""
    names = []
    for name in _objects(patient.get("name")):
        family = name.get("family")
        given = frozenset(normalize_text(g) for g in name.get("given") or () if isinstance(g, str) and g.strip())
        names.append((normalize_text(family) if isinstance(family, str) and family.strip() else None, given))
    return names


def _objects(value: Any) -> Iterable[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _dates_contradict(one: Any, other: Any) -> bool:
    """Two dates that cannot be the same day: ``1956-04`` and ``1956-04-02`` can, ``1956-04-03`` cannot."""
    return isinstance(one, str) and isinstance(other, str) and not (one.startswith(other) or other.startswith(one))


def _entry(ctx: RequestContext, graded: Graded) -> dict[str, Any]:
    return {"fullUrl": ctx.url("Patient", graded.document["_id"]), "resource": graded.document["resource"],
            "search": {"extension": [{"url": MATCH_GRADE, "valueCode": graded.grade}], "mode": "match",
                       "score": graded.score}}


def _outcome_entry(issue: Issue) -> dict[str, Any]:
    return {"resource": operation_outcome([issue]), "search": {"mode": "outcome"}}


def _boolean(op: OperationRequest, name: str) -> bool:
    value = op.raw_param(name)
    if value is None:
        return False
    if value in (True, False):
        return bool(value)
    if value in ("true", "false"):
        return value == "true"
    raise InvalidRequest(f"{name}: {value!r} is not a boolean", code="invalid", expression=(name,))


def _count(op: OperationRequest, ceiling: int) -> int:
    value = op.raw_param("count")
    if value is None:
        return ceiling
    if isinstance(value, bool) or (not isinstance(value, int) and not (isinstance(value, str) and value.isdigit())):
        raise InvalidRequest(f"count: {value!r} is not a positive integer", code="invalid", expression=("count",))
    if int(value) < 1:
        raise InvalidRequest("count: must be at least 1", code="invalid", expression=("count",))
    return min(int(value), ceiling)
