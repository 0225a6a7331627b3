"""``Observation/$lastn`` (https://hl7.org/fhir/R4/observation-operation-lastn.html): the most recent ``max``
Observations of each patient for each code, e.g. "the latest BCR-ABL1 value of every patient"
(``GET Observation/$lastn?code=http://loinc.org|69380-7``).

The other parameters are Observation search parameters and select the Observations considered (``patient``,
``subject``, ``category``, ``code``, ``date``...; the spec's ``category`` is not required here: a registry asks by
code). Observations are grouped by subject and by their codings (``Observation.code``: the same codings, the
same code) and ordered within a group by their latest effective date (``date``), then id; Observations without a
date come last. The grouping runs in MongoDB through ``ResourceStore.aggregate``, which puts the caller's access
filter in front (``storage/aggregation.py``): one ``$group`` with ``$topN``, nothing fetched that is not returned.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.search import compiled_filter
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.search.index_layout import SORT_DESCENDING, param_path, sort_path
from fhir_server.search.param_types import reference, token
from fhir_server.services import Services

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
# Parameters of the HTTP exchange, not criteria.
NOT_CRITERIA = frozenset({"max", "_format", "_pretty"})


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "lastn", lastn, frozenset({"type"}), types=frozenset({"Observation"}), methods=frozenset({"GET"}),
        definition=DEFINITION,
        documentation="The latest max Observations of each patient and code (max; Observation search parameters)"))


def _max(op: OperationRequest, ceiling: int) -> int:
    raw = op.param("max")
    if raw is None:
        return 1  # the operation's default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequest(f"max: {raw!r} is not a positive integer", code="invalid", expression=("max",))
    return min(int(raw), ceiling)


def pipeline(criteria: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Latest ``n`` of each (subject, codings) group among the Observations matching ``criteria``."""
    latest_first = {sort_path("date", SORT_DESCENDING): -1, "_id": 1}
    group = {"subject": f"${reference.path('subject')}", "systems": f"${param_path('code', token.SYSTEM)}",
             "codes": f"${param_path('code', token.CODE)}"}
    return [
        {"$match": criteria},
        {"$group": {"_id": group, "latest": {"$topN": {"n": n, "sortBy": latest_first,
                                                       "output": {"_id": "$_id", "resource": "$resource"}}}}},
        {"$sort": {"_id": 1}},  # the groups in a stable order (one key: its fields are arrays)
        {"$unwind": "$latest"},
        {"$replaceRoot": {"newRoot": "$latest"}},
    ]


async def lastn(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    n = _max(op, services.settings.max_count)
    criteria = await compiled_filter(ctx, services, "Observation",
                                     [(k, v) for k, v in op.params if k not in NOT_CRITERIA])
    docs = await services.store.aggregate(ctx, "Observation", pipeline(criteria, n))
    entries = [{"fullUrl": ctx.url("Observation", doc["_id"]), "resource": doc["resource"],
                "search": {"mode": "match"}} for doc in docs]
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
              "link": [{"relation": "self", "url": ctx.url("Observation", "$lastn")}]}
    return OperationResponse(200, with_entries(bundle, entries))
