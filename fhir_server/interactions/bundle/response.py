"""The entries of a transaction-response or batch-response (https://hl7.org/fhir/R4/bundle.html#transaction-response,
https://hl7.org/fhir/R4/http.html#transaction-response).

``Prefer: return=`` (http.html#ops) shapes every write entry: ``representation`` puts the stored resource in
``entry.resource``; ``OperationOutcome`` gives ``entry.response.outcome`` (the warnings, or a note of success);
``minimal`` leaves status, location, etag and lastModified only. Without the header a write entry has no resource
and an outcome only when validation warned: the spec leaves it to the server ("may"), a registry Bundle carries a
dozen resources the client already holds, and location and etag name each stored version exactly. Any other entry
(read, search, history, capabilities, operation) always carries what it answered, except a HEAD's: as over HTTP
(RFC 9110 9.3.2), its status, location, etag and lastModified without the content (resource or outcome).
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError
from fhir_server.interactions.request import FhirRequest
from fhir_server.interactions.result import InteractionResult, ReturnPreference


def response_entry(ctx: RequestContext, request: FhirRequest, result: InteractionResult,
                   preference: ReturnPreference | None) -> dict[str, Any]:
    """The response entry of one request entry, shaped by ``Prefer: return`` (module docstring)."""
    if request.method == "HEAD":
        return {"response": without_content(result.response_entry(ctx))}
    out: dict[str, Any] = {}
    writes = request.is_write
    if result.resource is not None and (not writes or preference == "representation"):
        out["resource"] = result.resource
    response = result.response_entry(ctx)
    if writes and preference == "minimal":
        response.pop("outcome", None)
    elif writes and preference == "OperationOutcome":
        response["outcome"] = result.outcome_or_note(request.method)
    out["response"] = response
    return out


def error_entry(ctx: RequestContext, exc: FhirError, method: str | None = None) -> dict[str, Any]:
    """The response entry of a batch entry that failed: its status and OperationOutcome (none for a HEAD)."""
    response = InteractionResult(exc.status, outcome=exc.outcome()).response_entry(ctx)
    return {"response": without_content(response) if method == "HEAD" else response}


def without_content(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "outcome"}
