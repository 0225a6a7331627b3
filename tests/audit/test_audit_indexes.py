"""The audit trail's indexes (``search/audit_values.py``, ``INDEX_SPECS``): every write transaction inserts its
event, so the trail is indexed by what it is searched by (date, agent, entity), not by a wildcard index over every
entry of every parameter; ``patient`` is served by the ``entity`` index (``COVERING``); the other parameters are
still searched (``test_audit_access.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import MongoClient

from fhir_server.search import compile_search, parse_search
from fhir_server.services import Services
from fhir_server.settings import Settings


@pytest.fixture(scope="module")
def trail(settings: Settings, mongo_uri: str, services: Services) -> Any:
    """The AuditEvent collection of the test database (created with its indexes by the server's start)."""
    client: MongoClient[Any] = MongoClient(mongo_uri)
    yield client[settings.mongodb_db]["AuditEvent"]
    client.close()


def _winning_index(trail: Any, query: dict[str, Any]) -> str | None:
    """The index the query planner picks for ``query`` (None: a collection scan)."""
    stage = trail.find(query).explain()["queryPlanner"]["winningPlan"]
    while stage is not None:
        if stage.get("stage") == "IXSCAN":
            return str(stage["indexName"])
        stage = stage.get("inputStage")
    return None


async def test_the_audit_trail_has_no_wildcard_index(trail: Any) -> None:
    keys = [dict(index["key"]) for index in trail.list_indexes()]
    assert keys and not any("$**" in key for key in keys)


@pytest.mark.parametrize("query", [
    {"sp.entity.r": "Patient/p1"},
    {"sp.agent.ic": "client-1"},
    {"sp.date": {"$elemMatch": {"lo": {"$gte": "2026-01-01"}, "hi": {"$lte": "2026-02-01"}}}},
])
async def test_the_audit_trail_is_searched_by_entity_agent_and_date_through_an_index(
        trail: Any, query: dict[str, Any]) -> None:
    assert _winning_index(trail, query) is not None


async def test_the_audit_trail_keeps_no_patient_index(trail: Any) -> None:
    assert not any(any(field.startswith("sp.patient") for field in index["key"]) for index in trail.list_indexes())


@pytest.mark.parametrize("query", [
    [("patient", "p1")],
    [("patient", "Patient/p1,Patient/p2"), ("action", "E")],
])
async def test_a_patient_search_of_the_trail_is_served_by_the_entity_index(
        trail: Any, services: Services, query: list[tuple[str, str]]) -> None:
    registry = services.search_parameters
    search = compile_search(parse_search(registry, "AuditEvent", query, strict=True), registry=registry)
    assert _winning_index(trail, search.filter) == "sp.entity.r_1__id_1"

