"""What an export level covers: resource types and the MongoDB filter of each.

Bulk Data Access IG 2.0, export.html#endpoint---system-level-export (every type), #endpoint---all-patients
(the Patient compartment of all patients) and #endpoint---group-of-patients (the compartment of the Group's
members). Compartment membership follows https://hl7.org/fhir/R4/compartmentdefinition-patient.html through
``SearchParameterRegistry.compartment_params``: a resource is in Patient/x's compartment when one of those
reference parameters holds ``Patient/x`` (``reference.path(param)``, the ``Type/id`` of its index entries).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.search.param_types import reference
from fhir_server.search.registry import SearchParameterRegistry

SYSTEM, PATIENT, GROUP = "system", "patient", "group"
Filter = dict[str, Any]


def level_types(registry: SearchParameterRegistry, level: str) -> tuple[str, ...]:
    """Every type an export at ``level`` may contain, Patient first."""
    if level == SYSTEM:
        return ("Patient", *(t for t in SUPPORTED_TYPES if t != "Patient"))
    return ("Patient", *(t for t in SUPPORTED_TYPES
                         if t != "Patient" and registry.compartment_params("Patient", t)))


def resolve_types(registry: SearchParameterRegistry, level: str, requested: tuple[str, ...] | None, *,
                  lenient: bool) -> tuple[tuple[str, ...], list[str]]:
    """The types to export (``_type`` or all of the level) and what lenient handling dropped.

    export.html#query-parameters: types the server cannot export for this request are an error, unless
    ``Prefer: handling=lenient`` asks to go on without them.
    """
    allowed = level_types(registry, level)
    if requested is None:
        return allowed, []
    unknown = [t for t in requested if t not in allowed]
    if unknown and not lenient:
        where = "this server" if level == SYSTEM else "the Patient compartment"
        raise InvalidRequest(f"_type {', '.join(unknown)}: not exported by {where}", code="not-supported",
                             expression=("_type",))
    kept = tuple(t for t in requested if t in allowed)
    if not kept:
        raise InvalidRequest("_type leaves no resource type to export", code="not-supported",
                             expression=("_type",))
    return kept, [f"_type {t}" for t in unknown]


def compartment_filter(registry: SearchParameterRegistry, resource_type: str,
                       patient_ids: list[str] | None) -> Filter:
    """Resources of ``resource_type`` in the compartment of ``patient_ids`` (None: of any patient)."""
    if resource_type == "Patient":
        return {} if patient_ids is None else {"_id": {"$in": patient_ids}}
    params = registry.compartment_params("Patient", resource_type)
    if patient_ids is None:
        condition: Any = {"$regex": "^Patient/"}
    else:
        condition = {"$in": [f"Patient/{i}" for i in patient_ids]}
    return {"$or": [{reference.path(param): condition} for param in params]}


def time_filter(since: datetime | None, transaction_time: datetime) -> Filter:
    """``_since`` (changed after it) and nothing changed after the manifest's ``transactionTime``
    (export.html#response---complete-status: the export reflects the server as of that instant)."""
    bounds: dict[str, datetime] = {"$lte": transaction_time}
    if since is not None:
        bounds["$gt"] = since
    return {"lastUpdated": bounds}


def all_of(*filters: Filter) -> Filter:
    """AND of the non-empty filters."""
    terms = [f for f in filters if f]
    if not terms:
        return {}
    return terms[0] if len(terms) == 1 else {"$and": terms}


def any_of(filters: list[Filter]) -> Filter:
    """OR of filters (several ``_typeFilter`` of one type); an empty filter matches everything."""
    if not filters or any(not f for f in filters):
        return {}
    return filters[0] if len(filters) == 1 else {"$or": filters}
