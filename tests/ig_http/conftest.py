"""The registry's implementation guide must be in the database for these tests: other test packages wipe it
(``empty_db``), and profiles are only loaded when a Services instance starts."""

from __future__ import annotations

import pytest

from fhir_server.context import RequestContext
from fhir_server.profiles_loader import load_profiles
from fhir_server.services import Services


@pytest.fixture(autouse=True)
async def implementation_guide(services: Services) -> None:
    """Reload ``profiles/`` when it is missing (idempotent by url|version: nothing is written otherwise)."""
    if await services.store.count(RequestContext.system(), "StructureDefinition", {}, limit=1) == 0:
        await load_profiles(services)
