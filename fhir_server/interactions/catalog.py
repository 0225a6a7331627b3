"""Every FHIR operation the server offers, and every extra check run on writes, registered in one place
(the routes and the CapabilityStatement are generated from the operation registry)."""

from __future__ import annotations

from fhir_server.interactions.enforcement import WriteCheck
from fhir_server.operations import OperationRegistry


def register_operations(registry: OperationRegistry) -> None:
    """Each operation module contributes its OperationSpec(s) here."""
    from fhir_server import cohorts
    from fhir_server.bulk import operation as bulk_export
    from fhir_server.interactions import everything, reindex, risk, terminology_ops, validate
    from fhir_server.reports import operation as registry_report

    for module in (validate, terminology_ops, risk, everything, reindex, registry_report, bulk_export, cohorts):
        module.register(registry)


def write_checks() -> list[WriteCheck]:
    """Checks run on every validated write besides profiles: refuse unusable SearchParameters before they are
    stored; warn when a submitted risk score disagrees with the one computed from the patient's data."""
    from fhir_server.interactions.reindex import check_search_parameter
    from fhir_server.interactions.risk import check_submitted_score

    return [check_search_parameter, check_submitted_score]
