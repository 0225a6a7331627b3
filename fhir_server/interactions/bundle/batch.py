"""batch (https://hl7.org/fhir/R4/http.html#transaction, bundle.html#batch): every entry on its own, with its own
status and OperationOutcome; one failure does not stop the others.

Every entry is a request like any other: parsed by the one parser, then dispatched through the same ``dispatch``
as an HTTP request (passed in by the dispatcher, Medplum's re-dispatching router), which authorizes it. A write
entry runs as a transaction of one entry (``transaction.execute_entries``): the same interaction functions, with
the transaction's processing rules (conditional references resolved, ``ifNoneExist``), in its own MongoDB
transaction. A batch entry may not reference another entry (bundle.html#batch: no interdependencies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, InvalidRequest
from fhir_server.interactions import audit_event
from fhir_server.interactions.bundle.parse import BundleEntry, bundle_entries, parse_entry
from fhir_server.interactions.bundle.response import error_entry, response_entry
from fhir_server.interactions.bundle.transaction import execute_entries
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.references import collect_references
from fhir_server.interactions.request import FhirRequest
from fhir_server.interactions.result import InteractionResult
from fhir_server.operations import OperationResponse
from fhir_server.services import Services

Dispatch = Callable[[RequestContext, Services, FhirRequest], Awaitable[InteractionResult | OperationResponse]]


async def run_batch(ctx: RequestContext, services: Services, request: FhirRequest,
                    dispatch: Dispatch) -> InteractionResult:
    """The batch Bundle of ``request``, answered with its batch-response."""
    out = []
    for index, raw in enumerate(bundle_entries(request.body)):
        out.append(await _one(ctx, services, request, index, raw, dispatch))
    return InteractionResult(200, with_entries({"resourceType": "Bundle", "type": "batch-response"}, out))


async def _one(ctx: RequestContext, services: Services, batch: FhirRequest, index: int, raw: Any,
               dispatch: Dispatch) -> dict[str, Any]:
    try:
        entry = await parse_entry(ctx, index, raw)
        result = await _perform(ctx, services, entry, dispatch)
    except FhirError as exc:
        asked = _asked(raw)
        audit_event.record_failure(ctx, services, asked, exc)  # unless the entry's dispatch recorded it
        return error_entry(ctx, exc, asked.method.upper())
    return response_entry(ctx, entry.request, result, batch.prefer_return)


async def _perform(ctx: RequestContext, services: Services, entry: BundleEntry,
                   dispatch: Dispatch) -> InteractionResult:
    if not entry.request.is_write:
        return _as_result(await dispatch(ctx, services, entry.request))
    for reference in collect_references(entry.resource, set()):
        if reference.startswith("urn:uuid:"):
            raise InvalidRequest(f"A batch entry cannot reference another entry ('{reference}')", code="invalid")
    results = await execute_entries(ctx, services, [entry], audited=entry.request)
    return results[0]


def _asked(raw: Any) -> audit_event.Asked:
    """What an entry that could not be parsed asked for, as far as it says."""
    request = raw.get("request") if isinstance(raw, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    url = request.get("url") if isinstance(request, dict) else None
    return audit_event.Asked(method if isinstance(method, str) else "", url if isinstance(url, str) else "")


def _as_result(answer: InteractionResult | OperationResponse) -> InteractionResult:
    """An operation's answer as an entry's: its status, and its body when that is a resource."""
    if isinstance(answer, InteractionResult):
        return answer
    return InteractionResult(answer.status, answer.body if isinstance(answer.body, dict) else None)
