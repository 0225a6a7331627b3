"""Fixtures of the report tests: a client of the app with the ``/report`` page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.reports.helpers import with_page


@pytest.fixture
async def page_client(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = with_page(create_app(settings, services))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c
