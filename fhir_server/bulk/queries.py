"""The MongoDB filter of what an export writes of one type: the level's scope (``bulk/scope.py``), the time
window of ``_since``, and any of the type's ``_typeFilter`` searches (export.html#query-parameters). The export's
files and its associated Provenance (``bulk/associated.py``) both ask it, so they agree on what was exported."""

from __future__ import annotations

from typing import Any

from fhir_server.bulk.jobs import ExportJob
from fhir_server.bulk.params import filter_pairs
from fhir_server.bulk.scope import GROUP, PATIENT, all_of, any_of, compartment_filter, time_filter
from fhir_server.context import RequestContext
from fhir_server.interactions.search import compiled_filter
from fhir_server.services import Services


async def type_query(ctx: RequestContext, services: Services, job: ExportJob, resource_type: str,
                     patient_ids: list[str] | None) -> dict[str, Any]:
    """Level scope AND time window AND (any of the type's ``_typeFilter`` searches)."""
    scope: dict[str, Any] = {}
    if job.level in (PATIENT, GROUP):
        scope = compartment_filter(services.search_parameters, resource_type, patient_ids)
    searches = [await search_filter(ctx, services, resource_type, q)
                for q in job.type_filters.get(resource_type, [])]
    return all_of(scope, time_filter(job.since, job.transaction_time), any_of(searches))


async def search_filter(ctx: RequestContext, services: Services, resource_type: str, query: str) -> dict[str, Any]:
    """The MongoDB filter of one ``_typeFilter`` search (chains and ``_has`` resolved by the search module)."""
    return await compiled_filter(ctx, services, resource_type, filter_pairs(query))
