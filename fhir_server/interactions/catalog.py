"""Every FHIR operation the server offers, registered in one place (routes and CapabilityStatement use it)."""

from __future__ import annotations

from fhir_server.operations import OperationRegistry


def register_operations(registry: OperationRegistry) -> None:
    """Each operation module contributes its OperationSpec(s) here."""
    from fhir_server.interactions import risk, terminology_ops, validate

    validate.register(registry)
    terminology_ops.register(registry)
    risk.register(registry)
    from fhir_server.interactions import everything, reindex
    everything.register(registry)
    reindex.register(registry)
