"""Fixtures of the audit trail's tests: a server process whose background audit writer never flushes on its own
(a flush happens only when a test asks, or at shutdown), so that what is written in a write's own transaction can
be told from what is queued."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.interactions.audit_event import CLIENT_SYSTEM
from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import client_as, parse, server_process, unique

NEVER = 3_600_000  # ms: the background writer's interval, longer than any test


@pytest.fixture(scope="module")
async def audit_services(settings: Settings, mongo_uri: str, services: Services) -> AsyncIterator[Services]:
    """Another server process on the test database, whose queued AuditEvents are written only by ``flush``."""
    quiet = settings.model_copy(update={"audit_flush_ms": NEVER, "audit_batch_size": 100_000})
    async with server_process(quiet, mongo_uri) as svc:
        yield svc


@pytest.fixture(scope="module")
async def auditor(audit_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An admin, who may read the audit trail."""
    async with client_as(audit_services, Caller(id=unique("auditor-"), role=Role.ADMIN)) as http:
        yield http


def a_client(role: Role = Role.ADMIN, center: str | None = None) -> Caller:
    """A caller of its own (its events are told from every other test's by its id)."""
    return Caller(id=unique(f"{role}-"), role=role, center=center)


async def flush(services: Services) -> None:
    assert services.audit_log is not None
    await services.audit_log.flush()


async def events(auditor: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    """The AuditEvents an admin finds with ``query`` (every page)."""
    response = await auditor.get(f"/fhir/AuditEvent?{query}&_count=1000")
    assert response.status_code == 200, response.text
    return [e["resource"] for e in parse(response).get("entry", [])]


async def events_of(auditor: httpx.AsyncClient, caller: Caller) -> list[dict[str, Any]]:
    return await events(auditor, f"agent:identifier={CLIENT_SYSTEM}|{caller.id}")


def decoded_query(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        if "query" in entity:
            return base64.b64decode(entity["query"]).decode()
    return None


def references(event: dict[str, Any], role: str) -> set[str]:
    """``entity.what.reference`` of the entities with object-role ``role`` (1 Patient, 4 Domain Resource)."""
    return {e["what"]["reference"] for e in event.get("entity", []) if e["role"]["code"] == role and "what" in e}
