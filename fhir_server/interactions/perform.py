"""A parsed request performed by its interaction: one function per family, shared by every way in.

``dispatch`` runs these for an HTTP request (a write in its own transaction); a batch runs them for each entry;
a transaction calls the same interaction functions inside its one unit of work (its GET entries through
``perform_read`` with the transaction's session, so they see its writes). Authorization is not done here but
by the callers, once per request or entry (``authorization.authorize``).
"""

from __future__ import annotations

from fhir_server.context import RequestContext
from fhir_server.errors import MethodNotAllowed, NotFound
from fhir_server.interactions import capabilities, history, search
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import conditional_delete, delete
from fhir_server.interactions.patch import conditional_patch, patch
from fhir_server.interactions.read import Shape, read, vread
from fhir_server.interactions.request import OPERATION_LEVELS, FhirRequest, Interaction
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.interactions.update import conditional_update, update
from fhir_server.operations import OperationRequest, OperationResponse
from fhir_server.services import Services
from fhir_server.storage.store import DbSession


async def perform_read(ctx: RequestContext, services: Services, request: FhirRequest, *,
                       session: DbSession | None = None) -> InteractionResult:
    """read, vread, search, history or capabilities; a Bundle or resource answered with 200 (or 304)."""
    kind, resource_type = request.interaction, request.resource_type
    if kind is Interaction.READ:
        assert resource_type and request.resource_id
        return await read(ctx, services, resource_type, request.resource_id, if_none_match=request.if_none_match,
                          if_modified_since=request.if_modified_since, shape=Shape.of(request.params),
                          session=session)
    if kind is Interaction.VREAD:
        assert resource_type and request.resource_id and request.version_id
        return await vread(ctx, services, resource_type, request.resource_id, request.version_id,
                           if_none_match=request.if_none_match, shape=Shape.of(request.params), session=session)
    if kind in (Interaction.SEARCH_TYPE, Interaction.SEARCH_SYSTEM, Interaction.SEARCH_COMPARTMENT):
        bundle = await search.search(ctx, services, resource_type, request.params, compartment=request.compartment,
                                     session=session)
        return InteractionResult(200, bundle)
    if kind in (Interaction.HISTORY_INSTANCE, Interaction.HISTORY_TYPE, Interaction.HISTORY_SYSTEM):
        bundle = await history.history(ctx, services, resource_type, request.resource_id, request.params,
                                       session=session)
        return InteractionResult(200, bundle)
    if kind is Interaction.CAPABILITIES:
        mode = next((value for name, value in request.params if name == "mode"), None)
        term = await services.conformance.terminology() if mode == "terminology" else None
        statement = capabilities.capabilities(ctx, services, mode, term)
        return InteractionResult(200, Shape.of(request.params).apply(statement))  # _summary, _elements as a read
    raise AssertionError(f"{kind} is not a read")


async def perform_write(uow: UnitOfWork, request: FhirRequest) -> InteractionResult:
    """create, update, patch or delete (conditional when the request has criteria instead of an id)."""
    kind, resource_type, resource_id = request.interaction, request.resource_type, request.resource_id
    assert resource_type is not None
    if kind is Interaction.CREATE:
        return await create(uow, resource_type, request.body, if_none_exist=request.if_none_exist)
    if kind is Interaction.UPDATE and resource_id is None:
        return await conditional_update(uow, resource_type, request.query, request.body, if_match=request.if_match,
                                        if_none_match=request.if_none_match)
    if kind is Interaction.UPDATE:
        assert resource_id is not None
        return await update(uow, resource_type, resource_id, request.body, if_match=request.if_match,
                            if_none_match=request.if_none_match)
    if kind is Interaction.PATCH and resource_id is None:
        return await conditional_patch(uow, resource_type, request.query, request.body, if_match=request.if_match,
                                       if_none_match=request.if_none_match)
    if kind is Interaction.PATCH:
        assert resource_id is not None
        return await patch(uow, resource_type, resource_id, request.body, if_match=request.if_match,
                           if_none_match=request.if_none_match)
    if kind is Interaction.DELETE and resource_id is None:
        return await conditional_delete(uow, resource_type, request.query, if_match=request.if_match,
                                        if_none_match=request.if_none_match)
    if kind is Interaction.DELETE:
        assert resource_id is not None
        return await delete(uow, resource_type, resource_id, if_match=request.if_match,
                            if_none_match=request.if_none_match)
    raise AssertionError(f"{kind} is not a write")


async def perform_operation(ctx: RequestContext, services: Services, request: FhirRequest) -> OperationResponse:
    """``$name`` at system, type or instance level, through the OperationRegistry (https://hl7.org/fhir/R4/
    operations.html): unknown 404, known but not offered with this method or at this level 405."""
    name, level = request.operation or "", OPERATION_LEVELS[request.interaction]
    spec = services.operations.find(name, level, request.resource_type, request.method)
    if spec is None:
        where = f"{request.resource_type or 'system'} {level} level"
        if services.operations.known(name):
            raise MethodNotAllowed(f"${name} is not available with {request.method} at {where}")
        raise NotFound(f"Unknown operation ${name}", code="not-supported")
    if request.version_id is not None and not spec.on_versions:
        raise NotFound(f"${name} is not defined on a version: call it on {request.resource_type}/"
                       f"{request.resource_id}", code="not-supported")
    headers = {k.lower(): v for k, v in request.headers.items()}
    operation = OperationRequest(name, level, request.resource_type, request.resource_id, request.method,
                                 request.params, request.body, headers, version_id=request.version_id)
    return await spec.handler(ctx, services, operation)
