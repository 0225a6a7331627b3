"""The one way a parsed request is run, for an HTTP request and for every entry of a batch.

``dispatch`` authorizes the request (``authorization.authorize``, the single hook for access rules), then runs
its interaction: a write in its own transaction (``run_in_transaction``, which also applies what the commit
changes), a read, search, history or capabilities as is, an operation through the OperationRegistry, a batch
or transaction through ``bundle/``. Errors are raised as ``FhirError`` (rendered once, by ``api/errors.py`` or
as a batch entry's response); what comes back is an ``InteractionResult`` (status, resource or Bundle, the
version that gives ETag, Location and Last-Modified) or, for an operation, its ``OperationResponse``.
"""

from __future__ import annotations

from fhir_server.context import RequestContext
from fhir_server.interactions import authorization
from fhir_server.interactions.bundle.batch import run_batch
from fhir_server.interactions.bundle.transaction import run_transaction
from fhir_server.interactions.perform import perform_operation, perform_read, perform_write
from fhir_server.interactions.request import OPERATIONS, WRITES, FhirRequest, Interaction
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import run_in_transaction
from fhir_server.operations import OperationResponse
from fhir_server.services import Services


async def dispatch(ctx: RequestContext, services: Services,
                   request: FhirRequest) -> InteractionResult | OperationResponse:
    authorization.authorize(ctx, request)
    kind = request.interaction
    if kind in WRITES:
        return await run_in_transaction(ctx, services, lambda uow: perform_write(uow, request))
    if kind in OPERATIONS:
        return await perform_operation(ctx, services, request)
    if kind is Interaction.TRANSACTION:
        return await run_transaction(ctx, services, request)
    if kind is Interaction.BATCH:
        return await run_batch(ctx, services, request, dispatch)
    return await perform_read(ctx, services, request)
