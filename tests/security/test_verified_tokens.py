"""A process checks an access token's signature once and keeps the caller it proves (every request of a client
carries the same token until it expires), but never accepts from that memory what a fresh verification would
refuse: not after the token's ``exp``, and not once the key that signed it is no longer published."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from joserfc.jws import extract_compact
from pymongo import AsyncMongoClient

from fhir_server.errors import Unauthorized
from fhir_server.permissions import Role
from fhir_server.security import access_tokens, signing
from fhir_server.security.access_tokens import AccessTokens
from fhir_server.security.clients import Client
from fhir_server.security.jwt_checks import LEEWAY_SECONDS, now
from fhir_server.security.remote_keys import RemoteKeySets
from fhir_server.security.scopes import parse_scopes
from fhir_server.security.signing import SigningKeys
from fhir_server.storage.documents import now_ms
from fhir_server.storage.security_store import SIGNING_KEYS, SecurityStore

BASE = "http://testserver/fhir"
ADMIN = Client("admin-1", Role.ADMIN, None, None, None, ())


@pytest.fixture
async def own_keys(mongo_client: AsyncMongoClient) -> AsyncIterator[tuple[AccessTokens, SigningKeys]]:
    """Tokens of a key set of their own (a database of its own: retiring its keys touches no other test)."""
    name = f"tokens_{uuid.uuid4().hex[:8]}"
    keys = SigningKeys(SecurityStore(mongo_client[name]), 300)
    try:
        yield AccessTokens(keys, RemoteKeySets(), 300), keys
    finally:
        await mongo_client.drop_database(name)


async def _token(tokens: AccessTokens, at: int) -> str:
    return await tokens.issue(ADMIN, parse_scopes("system/*.rs"), BASE, at)


async def test_a_token_is_verified_once_while_its_key_stays_published(
        own_keys: tuple[AccessTokens, SigningKeys], monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, _ = own_keys
    at = now()
    token = await _token(tokens, at)
    checked: list[str] = []
    verify = access_tokens.verified
    monkeypatch.setattr(access_tokens, "verified", lambda t, key: checked.append(t) or verify(t, key))
    first = await tokens.caller(token, BASE, at)
    again = await tokens.caller(token, BASE, at + 1)
    assert first == again and first.id == "admin-1" and first.role is Role.ADMIN
    assert checked == [token]


async def test_a_remembered_token_is_401_once_it_has_expired(own_keys: tuple[AccessTokens, SigningKeys]) -> None:
    tokens, _ = own_keys
    at = now()
    token = await _token(tokens, at)
    await tokens.caller(token, BASE, at)
    with pytest.raises(Unauthorized, match="expired"):
        await tokens.caller(token, BASE, at + tokens.lifetime + LEEWAY_SECONDS + 1)


async def test_a_remembered_token_is_401_once_its_signing_key_is_no_longer_published(
        own_keys: tuple[AccessTokens, SigningKeys], mongo_client: AsyncMongoClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, keys = own_keys
    at = now()
    token = await _token(tokens, at)
    await tokens.caller(token, BASE, at)
    kid = str(extract_compact(token.encode()).protected["kid"])
    past = now_ms() - timedelta(seconds=1)
    # arranging what no request can: the key withdrawn by hand (its document in this key set's database)
    store = keys._store._keys
    assert store.name == SIGNING_KEYS
    await store.update_one({"_id": kid}, {"$set": {"retired": past, "expires": past}})
    monkeypatch.setattr(signing, "CACHE_SECONDS", 0.0)  # the process re-reads the key set now, not in a minute
    with pytest.raises(Unauthorized, match="does not publish"):
        await tokens.caller(token, BASE, at + 1)


async def test_a_remembered_token_stays_valid_when_the_key_set_is_re_read_unchanged(
        own_keys: tuple[AccessTokens, SigningKeys], monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, keys = own_keys
    at = now()
    token = await _token(tokens, at)
    await tokens.caller(token, BASE, at)
    monkeypatch.setattr(signing, "CACHE_SECONDS", 0.0)
    await keys.rotate()  # a new key signs from now on; the old one stays published for tokens in flight
    assert (await tokens.caller(token, BASE, at + 1)).id == "admin-1"
