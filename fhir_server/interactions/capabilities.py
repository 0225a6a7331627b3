"""The CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html), generated from what the
server really serves: the supported types, the interactions routed for them, the search parameter registry
and the operation registry; and, for ``GET metadata?mode=terminology`` (http.html#capabilities), the
TerminologyCapabilities (https://hl7.org/fhir/R4/terminologycapabilities.html) of its terminology service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.context import RequestContext
from fhir_server.contract import BASE
from fhir_server.errors import InvalidRequest
from fhir_server.operations import OperationSpec
from fhir_server.resources import AUDIT_EVENT, SERVED_TYPES
from fhir_server.search.registry import SearchParam, SearchParameterRegistry
from fhir_server.services import Services
from fhir_server.terminology import Terminology

_STARTED = datetime.now(UTC).isoformat(timespec="seconds")
TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                     "create", "search-type")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
RESULT_PARAMETERS = ("_sort", "_count", "_total", "_summary", "_elements", "_include", "_revinclude")
# Bulk Data 2.0 (export.html): a server offering $export "SHOULD" say so by instantiating the IG's statement
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
REGISTRY_GUIDE = f"{BASE}/ImplementationGuide/ifp"  # profiles/ImplementationGuide-ifp.json


def capabilities(ctx: RequestContext, services: Services, mode: str | None, term: Terminology | None = None
                 ) -> dict[str, Any]:
    """What ``GET metadata?mode=`` asks for: ``full`` (the default) the CapabilityStatement, ``terminology`` the
    TerminologyCapabilities (``term``, the terminology service, needed). ``normative`` (the statement's
    normative portions only) is not offered: a 400 says so, rather than a statement that is not what was asked."""
    if mode in (None, "full"):
        return capability_statement(ctx, services)
    if mode == "terminology" and term is not None:
        return terminology_capabilities(ctx, term)
    raise InvalidRequest(f"mode '{mode}' is not supported: use full or terminology", code="not-supported",
                         expression=("mode",))


def terminology_capabilities(ctx: RequestContext, term: Terminology) -> dict[str, Any]:
    """The code systems the terminology service knows (published ones with their versions, R4's own) and what
    its operations take (``interactions/terminology_ops.py``)."""
    return {
        "resourceType": "TerminologyCapabilities",
        "status": "active",
        "date": _STARTED,
        "publisher": "IFP registry",
        "kind": "instance",
        "software": {"name": "ifp-fhir", "version": __version__},
        "implementation": {"description": "IFP registry FHIR R4 server", "url": ctx.base_url},
        "codeSystem": [{"uri": url, **({"version": [{"code": v} for v in versions]} if versions else {}),
                        "subsumption": True} for url, versions in term.code_systems().items()],
        "expansion": {"hierarchical": False, "paging": True, "parameter": [
            {"name": "filter", "documentation": "text the codes' displays or codes contain (case-insensitive)"},
            {"name": "count", "documentation": "the number of codes of the page"},
            {"name": "offset", "documentation": "where the page starts"}]},
        "validateCode": {"translations": False},
        "translation": {"needsMap": False},  # $translate without a url searches every ConceptMap held
    }


def capability_statement(ctx: RequestContext, services: Services) -> dict[str, Any]:
    registry = services.search_parameters
    accepted = services.settings.accepted_type_set
    resources = [_audit_event(services) if t == AUDIT_EVENT else _resource(t, services)
                 for t in SERVED_TYPES if not accepted or t in accepted or t == AUDIT_EVENT]
    system_ops = [spec for spec in services.operations.all() if "system" in spec.levels]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,  # what the statement describes is fixed when the process starts
        "publisher": "IFP registry",
        "kind": "instance",
        "software": {"name": "ifp-fhir", "version": __version__},
        "implementation": {"description": "IFP registry FHIR R4 server", "url": ctx.base_url},
        "instantiates": [BULK_DATA],
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json", "xml", "application/fhir+xml"],
        # JSON Patch, and FHIRPath Patch in either format
        "patchFormat": ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"],
        # the registry's guide "in its entirety" only where its rule table is enforced (FHIR_REGISTRY_RULES)
        **({"implementationGuide": [REGISTRY_GUIDE]} if services.settings.registry_rules else {}),
        "rest": [{
            "mode": "server",
            **_security(ctx, services),
            "resource": resources,
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "searchParam": [_search_param(p) for p in _common_params(registry)],
            "operation": [_operation(spec) for spec in system_ops],
        }],
    }


def _security(ctx: RequestContext, services: Services) -> dict[str, Any]:
    """``rest.security`` of a server taking SMART Backend Services tokens
    (https://hl7.org/fhir/smart-app-launch/conformance.html#using-cors): the service and the token endpoint."""
    if services.settings.auth_mode != "smart":
        return {}
    return {"security": {
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": ctx.url("auth", "token")}]}],
        "description": "SMART Backend Services: client_credentials with private_key_jwt; "
                       f"discovery at {ctx.url('.well-known', 'smart-configuration')}",
    }}


def _common_params(registry: SearchParameterRegistry) -> list[SearchParam]:
    return [p for code, p in sorted(registry.for_type("Patient").items())
            if code.startswith("_") and registry.evaluable(p, "Patient")]


def _evaluable(registry: SearchParameterRegistry, resource_type: str) -> list[SearchParam]:
    """The parameters of ``resource_type`` the server evaluates, by code; kept by the registry until its
    parameters change (146 types make the statement 450 kB: this halves its 6 ms)."""
    def build() -> list[SearchParam]:
        return [p for _, p in sorted(registry.for_type(resource_type).items())
                if registry.evaluable(p, resource_type)]
    return registry.derived("capabilities", resource_type, build)


def _resource(resource_type: str, services: Services) -> dict[str, Any]:
    params = _evaluable(services.search_parameters, resource_type)
    references = sorted(p.code for p in params if p.type == "reference")
    ops = _type_operations(services, resource_type)
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        **_supported_profiles(resource_type, services),
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "local"],
        "searchInclude": ["*", *(f"{resource_type}:{code}" for code in references)],
        "searchRevInclude": ["*"],
        "searchParam": [*(_search_param(p) for p in params), *_SPECIAL_TYPE_PARAMS],
        "operation": [_operation(spec) for spec in ops],
    }


# The type-level parameters that are no SearchParameter's (search.html#has, search.html#list, search_filter.html):
# a client learns of them from the statement like of any other
_SPECIAL_TYPE_PARAMS = (
    {"name": "_has", "type": "special",
     "documentation": "Reverse chaining: _has:Type:reference-parameter:parameter=value"},
    {"name": "_list", "type": "special", "documentation": "The resources a List (by id) holds as items"},
    {"name": "_filter", "type": "special",
     "documentation": "search_filter.html: tests of the type's parameters joined by and, or, not and parentheses"},
)


def _supported_profiles(resource_type: str, services: Services) -> dict[str, Any]:
    """``supportedProfile``: the registry's profiles of the type, those its enforced rule table requires of the
    resources it selects (``profiles/rules.json``), in rule order."""
    if not services.settings.registry_rules:
        return {}
    profiles = list(dict.fromkeys(r["profile"] for r in services.rules if r.get("resourceType") == resource_type))
    return {"supportedProfile": profiles} if profiles else {}


def _audit_event(services: Services) -> dict[str, Any]:
    """The audit trail: recorded by the server, read and searched by admins only (README, "Audit trail")."""
    params = services.search_parameters.for_type(AUDIT_EVENT)
    return {
        "type": AUDIT_EVENT,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{AUDIT_EVENT}",
        "documentation": "Written by the server for every interaction (IHE BALP); read and searched by admins only",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [*(_search_param(p) for _, p in sorted(params.items())), *_SPECIAL_TYPE_PARAMS],
        "operation": [_operation(spec) for spec in _type_operations(services, AUDIT_EVENT)],
    }


def _type_operations(services: Services, resource_type: str) -> list[OperationSpec]:
    return [spec for spec in services.operations.all()
            if spec.levels & {"type", "instance"} and (spec.types is None or resource_type in spec.types)]


def _search_param(param: SearchParam) -> dict[str, Any]:
    out = {"name": param.code, "type": param.type}
    if param.url:
        out["definition"] = param.url
    return out


def _operation(spec: OperationSpec) -> dict[str, Any]:
    # an operation of this server's own (no HL7 definition) is named in the registry's namespace, never HL7's
    out = {"name": spec.name, "definition": spec.definition or f"{BASE}/OperationDefinition/{spec.name}"}
    if spec.documentation:
        out["documentation"] = spec.documentation
    return out
