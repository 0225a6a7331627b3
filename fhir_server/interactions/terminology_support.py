"""Code sets for token ``:below``/``:above``/``:in``/``:not-in`` from the terminology stored on the server.
The same hierarchy code serves ``CodeSystem/$subsumes`` (https://hl7.org/fhir/R4/search.html#token)."""

from __future__ import annotations

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest
from fhir_server.search import TerminologyRequest
from fhir_server.services import Services
from fhir_server.terminology.valueset import ExpansionError


async def expand_request(ctx: RequestContext, services: Services,
                         request: TerminologyRequest) -> set[tuple[str | None, str]]:
    terminology = await services.conformance.terminology()
    if request.direction in ("below", "above"):
        if not request.system or not request.code:
            raise InvalidRequest(f":{request.direction} needs system|code", code="invalid")
        if terminology.code_system(request.system) is None:
            raise InvalidRequest(f"CodeSystem '{request.system}' is not known to this server", code="not-found")
        closure = (terminology.descendants(request.system, request.code) if request.direction == "below"
                   else terminology.ancestors(request.system, request.code))
        return {(request.system, code) for code in closure | {request.code}}
    if not request.value_set:
        raise InvalidRequest(":in/:not-in needs a ValueSet URL", code="invalid")
    try:
        membership = terminology.membership(request.value_set)
    except ExpansionError as exc:  # an unknown or unexpandable ValueSet is the client's problem
        raise InvalidRequest(f"ValueSet '{request.value_set}' cannot be expanded: {exc}", code="not-found") from exc
    return {(system, code) for system, code in membership.codes()}
