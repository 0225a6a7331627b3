"""``$versions`` (https://hl7.org/fhir/R4/capabilitystatement-operation-versions.html): the FHIR versions this
endpoint speaks, and the one it uses when a request names none.

A client names a version with the ``fhirVersion`` media-type parameter (http.html#version-parameter); this server
speaks R4 only, so the answer lists ``4.0`` as the one version and the default. Like the CapabilityStatement it
serves discovery, so it needs no token (``api.routes``) and no permission (``authorization``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec

DEFINITION = "http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions"
SPOKEN = ("4.0",)  # major.minor, as the operation asks; api.negotiation takes 4.0 and 4.0.1 as this one
DEFAULT = "4.0"


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "versions", versions, frozenset({"system"}), methods=frozenset({"GET"}), definition=DEFINITION,
        documentation="The FHIR versions this endpoint speaks (R4 only) and its default"))


async def versions(ctx: RequestContext, services: Any, op: OperationRequest) -> OperationResponse:
    parameters = [{"name": "version", "valueCode": v} for v in SPOKEN] + [{"name": "default", "valueCode": DEFAULT}]
    return OperationResponse(200, {"resourceType": "Parameters", "parameter": parameters})
