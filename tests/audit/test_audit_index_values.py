"""The search values of a recorded AuditEvent are extracted without FHIRPath (``search/audit_values.py``, it runs for
every request): they must be exactly what the generic extraction from the R4 expressions gives, for every shape of
event the server records."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.context import RequestContext
from fhir_server.interactions.audit_event import Asked, data_entity, event, patient_entity, query_entity
from fhir_server.permissions import Caller, Role
from fhir_server.search import audit_values
from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage.documents import now_ms

BASE = "http://testserver/fhir"
EHR = RequestContext.for_caller(BASE, Caller(id="ehr-fr-poi", role=Role.EHR, center="FR-POI"))
ADMIN = RequestContext.for_caller(BASE, Caller(id="admin-1", role=Role.ADMIN), client_address="10.1.2.3")


def shapes() -> list[tuple[str, dict[str, Any]]]:
    at = now_ms()
    many = [patient_entity(f"Patient/p{i}") for i in range(30)]
    return [
        ("read", event("ifp-fhir", EHR, BASE, Asked("GET", "Patient/p1", "read", "R", "Patient", "p1"), 200,
                       [data_entity("Patient/p1/_history/3"), patient_entity("Patient/p1")], at)),
        ("search", event("ifp-fhir", ADMIN, BASE, Asked("GET", "Observation?code=x", "search-type", "E",
                                                        "Observation", query=True),
                         200, [query_entity("Observation?code=x"), *many], at)),
        ("search of versions and URLs", event("ifp-fhir", ADMIN, BASE, Asked("GET", "Library?x=y", "search-type", "E",
                                                                         "Library", query=True),
                                              200, [query_entity("Library?x=y"), data_entity("Patient/p1/_history/3"),
                                                    patient_entity("Patient/p1"), data_entity("Patient/p1"),
                                                    data_entity("http://example.org/fhir/Library/x|1"),
                                                    data_entity("http://example.org/fhir/Library/x"),
                                                    data_entity("#contained"), *many[:3]], at)),
        ("transaction", event("node-2", ADMIN, BASE, Asked("POST", "", "transaction", "E"), 200,
                              [data_entity("Patient/p1/_history/1"), data_entity("Observation/o1/_history/1"),
                               patient_entity("Patient/p1")], at)),
        ("refused", event("ifp-fhir", EHR, BASE, Asked("GET", "AuditEvent", "search-type", "E", "AuditEvent",
                                                       query=True), 403, [query_entity("AuditEvent")], at,
                          description="403: Only an admin may read the audit trail")),
        ("unauthenticated", event("ifp-fhir", None, BASE, Asked.raw("GET", "Nonsense", ""), 401, [], at,
                                  description="401: no token")),
        ("unexpected", event("ifp-fhir", ADMIN, "", Asked("DELETE", "Patient/p1", "delete", "D", "Patient", "p1"),
                             500, [data_entity("Patient/p1")], at, unexpected=True)),
    ]


@pytest.mark.parametrize(("name", "resource"), shapes(), ids=[name for name, _ in shapes()])
def test_the_search_values_of_a_recorded_event_are_the_r4_expressions_values(name: str,
                                                                              resource: dict[str, Any]) -> None:
    registry = SearchParameterRegistry.load_default()
    assert audit_values.applies(registry, resource)
    assert audit_values.index_values(registry, resource) == extract_index_values(registry, resource)


def test_another_audit_event_parameter_or_element_falls_back_to_the_generic_extraction() -> None:
    registry = SearchParameterRegistry.load_default()
    _, resource = shapes()[0]
    assert not audit_values.applies(registry, {**resource, "meta": {**resource["meta"], "tag": [{"code": "x"}]}})
    registry.add_or_replace({"resourceType": "SearchParameter", "url": "https://example.org/sp/audit-site",
                             "name": "site", "status": "active", "code": "site", "base": ["AuditEvent"],
                             "type": "token", "expression": "AuditEvent.source.site"})
    assert not audit_values.applies(registry, resource)


@pytest.mark.parametrize(("name", "resource"), shapes(), ids=[name for name, _ in shapes()])
def test_every_patient_of_a_recorded_event_is_also_one_of_its_entities(name: str, resource: dict[str, Any]) -> None:
    """What ``audit_values.COVERING`` stands on: a search by ``patient`` is served by the ``entity`` index."""
    values = audit_values.index_values(SearchParameterRegistry.load_default(), resource)
    assert all(entry in values["entity"] for entry in values.get("patient", ()))
