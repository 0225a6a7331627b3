"""A plain-FHIR client whose body limit admits HL7's largest examples (the server's default limit, 16 MiB; the
shared test server keeps 1 MB to test the limit itself)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON


@pytest.fixture(scope="session")
async def big_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The ``client`` fixture's server (same database and rules) with the default body limit."""
    settings = services.settings.model_copy(update={"max_body_bytes": Settings.model_fields["max_body_bytes"].default})
    wide = dataclasses.replace(services, settings=settings)
    transport = httpx.ASGITransport(app=create_app(settings, wide))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": FHIR_JSON}) as c:
        yield c
