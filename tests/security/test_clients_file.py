"""The clients file (issue #11 item 2): re-read when it changes, without a restart; a malformed file is a clear
start-up error naming the entry, never a silent default; ``jwks_uri`` may stand instead of ``jwks``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.bootstrap import start_services
from fhir_server.security.clients import ClientsFileError
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.security.tokens import ClientsFile, assertion, form, request_token


async def test_a_client_removed_from_the_file_gets_no_token_and_one_added_back_does(
        anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    entries = clients.entries()
    clients.write([e for e in entries if e["client_id"] != client.client_id])
    removed = await request_token(anonymous, form(assertion(client)))
    assert (removed.status_code, removed.json()["error"]) == (400, "invalid_client")
    clients.write(entries)
    assert (await request_token(anonymous, form(assertion(client)))).status_code == 200


async def test_a_file_broken_while_serving_refuses_every_client_until_fixed(
        anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    good = clients.path.read_text()
    clients.path.write_text(good.replace('"researcher"', '"chief"', 1))
    try:
        broken = await request_token(anonymous, form(assertion(client)))
        assert (broken.status_code, broken.json()["error"]) == (400, "invalid_client")
    finally:
        clients.path.write_text(good)
    assert (await request_token(anonymous, form(assertion(client)))).status_code == 200


def _entry(clients: ClientsFile, **changes: Any) -> dict[str, Any]:
    client = clients.register("ehr", "FR-POI")
    entry = next(e for e in clients.entries() if e["client_id"] == client.client_id)
    return {k: v for k, v in {**entry, **changes}.items() if v is not None}


@pytest.mark.parametrize(("changes", "message"), [
    ({"role": "chief"}, "role must be one of"),
    ({"center": None}, "needs its center"),
    ({"jwks_uri": "https://example.org/jwks"}, "either jwks"),
    ({"jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}}, "kid"),
    ({"scope": "everything"}, "not a SMART resource scope"),
    ({"colour": "blue"}, "unknown field"),
])
async def test_a_malformed_entry_stops_the_start_naming_it(settings: Settings, mongo_uri: str, clients: ClientsFile,
                                                         tmp_path: Path, changes: dict[str, Any],
                                                         message: str) -> None:
    entry = _entry(clients, **changes)
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [entry]}))
    broken = settings.model_copy(update={"auth_mode": "smart", "clients_file": path})
    with pytest.raises(ClientsFileError) as error:
        await start_services(broken, mongo_uri)
    assert f"clients[0] ({entry['client_id']})" in str(error.value) and message in str(error.value)


async def test_a_private_key_in_the_file_or_a_duplicate_id_stops_the_start(
        settings: Settings, mongo_uri: str, clients: ClientsFile, tmp_path: Path) -> None:
    client = clients.register("admin")
    entry = next(e for e in clients.entries() if e["client_id"] == client.client_id)
    path = tmp_path / "clients.json"
    for entries, message in (([entry, entry], "registered twice"),
                             ([{**entry, "jwks": {"keys": [client.key.as_dict(private=True)]}}], "private key")):
        path.write_text(json.dumps({"clients": entries}))
        with pytest.raises(ClientsFileError, match=message):
            await start_services(settings.model_copy(update={"auth_mode": "smart", "clients_file": path}),
                                 mongo_uri)


async def test_a_client_with_a_jwks_uri_signs_with_a_key_published_there(
        smart_services: Services, anonymous: httpx.AsyncClient, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    entries = clients.entries()
    entry = next(e for e in entries if e["client_id"] == client.client_id)
    published = entry.pop("jwks")
    entry["jwks_uri"] = "https://ehr.example/jwks.json"
    clients.write(entries)
    seen: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=published)

    authority = smart_services.authority
    assert authority is not None
    authority.remote.use_http(httpx.AsyncClient(transport=httpx.MockTransport(serve)))
    try:
        assert (await request_token(anonymous, form(assertion(client)))).status_code == 200
    finally:
        authority.remote.use_http(httpx.AsyncClient())
    assert seen == ["https://ehr.example/jwks.json"]
