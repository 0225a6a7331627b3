"""``GET /report``: the registry report as an HTML page for people (data-contract.md, "The registry report":
"also offered ... as an HTML page with the table and the figure"). Same filters as ``$registry-report``
(``period-start``, ``period-end``, ``country``, ``center``, ``cohort``) as query parameters.

Include ``report_router`` in the app (outside the ``/fhir`` prefix).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from fhir_server.api.pages import account_bar, page_context
from fhir_server.errors import FhirError
from fhir_server.interactions import audit_event
from fhir_server.reports import html
from fhir_server.reports.filters import parse_filters
from fhir_server.reports.model import Filters
from fhir_server.reports.operation import compute

report_router = APIRouter()


@report_router.get("/report", response_class=HTMLResponse)
async def report_page(request: Request) -> HTMLResponse:
    """The report page; invalid filters or an unknown cohort give an HTML error page with their status. In smart
    mode it needs a signed-in session (or a bearer token): see ``api/pages.py``."""
    services = request.app.state.services
    ctx = await page_context(request, services.settings)
    # audited as ``$registry-report`` is (an operation: the query is its entity); the URL is outside the FHIR base
    query = request.url.query
    asked = audit_event.Asked("GET", f"/report?{query}" if query else "/report", "operation", "E", query=True)
    filters: Filters | None = None
    try:
        filters = parse_filters(request.query_params.getlist)
        report = await compute(ctx, services, filters)
    except FhirError as exc:
        audit_event.record_failure(ctx, services, asked, exc)
        return HTMLResponse(html.error_page(filters, str(exc), account_bar(request)), status_code=exc.status)
    audit_event.queue(services, ctx, asked, 200, [audit_event.query_entity(asked.url)])
    return HTMLResponse(html.render(report, ctx.base_url, account_bar(request)))
