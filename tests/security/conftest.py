"""A server that takes tokens (``FHIR_AUTH_MODE=smart``) on the tests' database, with a clients file of its own,
and callers per role with real tokens (see ``tokens.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.conftest import server_process
from tests.security.tokens import ClientsFile, app_client, bearer_client, token_for

AsRole = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def clients_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth") / "clients.json"


@pytest.fixture(scope="session")
def smart_settings(settings: Settings, clients_path: Path) -> Settings:
    return settings.model_copy(update={"auth_mode": "smart", "clients_file": clients_path})


@pytest.fixture(scope="session")
async def smart_services(smart_settings: Settings, mongo_uri: str, services: Services) -> AsyncIterator[Services]:
    """Services of a server process with tokens, on the database of ``services`` (which drops it)."""
    async with server_process(smart_settings, mongo_uri) as svc:
        yield svc


@pytest.fixture(scope="session")
def clients(clients_path: Path) -> ClientsFile:
    return ClientsFile(clients_path)


@pytest.fixture
async def anonymous(smart_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server with tokens that sends none."""
    async with app_client(smart_services) as http:
        yield http


@pytest.fixture
async def as_role(smart_services: Services, clients: ClientsFile,
                  anonymous: httpx.AsyncClient) -> AsyncIterator[AsRole]:
    """``await as_role("ehr", center="FR-POI", scope=...)``: an httpx client with a real bearer token of a newly
    registered client of that role (closed after the test)."""
    opened: list[httpx.AsyncClient] = []

    async def make(role: str, center: str | None = None, scope: str = "system/*.cruds") -> httpx.AsyncClient:
        client = clients.register(role, center)
        http = bearer_client(smart_services, await token_for(anonymous, client, scope))
        opened.append(http)
        return http

    try:
        yield make
    finally:
        for http in opened:
            await http.aclose()
