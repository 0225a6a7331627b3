"""``GET [base]/$registry-report`` (data-contract.md, "The registry report").

Parameters: ``period-start``, ``period-end`` (registration date), ``country`` and ``center`` (comma-separated
or repeated), ``cohort`` (a Group id: only its members), ``_format`` (``text/csv`` or ``csv`` for CSV;
JSON otherwise). Answers a MeasureReport, or ``text/csv``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fhir_server.cohorts import cohort_patient_ids
from fhir_server.context import RequestContext
from fhir_server.errors import NotAcceptable
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.reports.build import registry_report
from fhir_server.reports.filters import params_getter, parse_filters
from fhir_server.reports.measure_report import to_csv, to_measure_report
from fhir_server.reports.model import Filters, RegistryReport

DEFINITION = "https://cml-registry.eu/fhir/OperationDefinition/registry-report"
CSV_FORMATS = {"text/csv", "csv"}
# the FHIR formats: the MeasureReport, in the format the server negotiated (api/negotiation.py)
FHIR_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir",
                "xml", "application/xml", "application/fhir+xml", "application/xml+fhir", "text/xml"}

CohortResolver = Callable[[RequestContext, Any, str], Awaitable[set[str]]]


async def default_cohort(ctx: RequestContext, services: Any, group_id: str) -> set[str]:
    """Patient ids of a cohort Group's members (``fhir_server.cohorts``)."""
    return await cohort_patient_ids(ctx, services, group_id)


async def compute(ctx: RequestContext, services: Any, filters: Filters,
                  cohort: CohortResolver = default_cohort) -> RegistryReport:
    """Resolve the cohort (if any) to patient ids and compute the report."""
    if filters.cohort:
        filters = replace(filters, patient_ids=frozenset(await cohort(ctx, services, filters.cohort)))
    return await registry_report(ctx, services.store, filters)


def wants_csv(op: OperationRequest) -> bool:
    fmt = (op.param("_format") or "").strip().lower()
    if fmt:
        if fmt in CSV_FORMATS:
            return True
        if fmt in FHIR_FORMATS:
            return False
        raise NotAcceptable(f"_format '{fmt}' is not offered by $registry-report (use json, xml or text/csv)")
    accept = op.headers.get("accept", "")
    return "text/csv" in accept and "json" not in accept and "xml" not in accept


def handler(cohort: CohortResolver = default_cohort) -> Callable[..., Awaitable[OperationResponse]]:
    async def registry_report_operation(ctx: RequestContext, services: Any,
                                        op: OperationRequest) -> OperationResponse:
        """$registry-report: the MeasureReport (or CSV) of the registered patients within the filters."""
        csv_wanted = wants_csv(op)
        report = await compute(ctx, services, parse_filters(params_getter(op.params)), cohort)
        if csv_wanted:
            return OperationResponse(200, to_csv(report).encode(), "text/csv; charset=utf-8",
                                     {"Content-Disposition": 'inline; filename="registry-report.csv"'})
        return OperationResponse(200, to_measure_report(report))
    return registry_report_operation


def register(registry: OperationRegistry, cohort: CohortResolver = default_cohort) -> None:
    """Add ``$registry-report`` (GET, system level) to the operation registry."""
    registry.register(OperationSpec(
        name="registry-report", handler=handler(cohort), levels=frozenset({"system"}),
        methods=frozenset({"GET"}), definition=DEFINITION,
        documentation="The registry report (MeasureReport; _format=text/csv for CSV): Tab. 1 and Fig. 1 of the "
                      "registry letter; filters period-start, period-end, country, center, cohort",
    ))
