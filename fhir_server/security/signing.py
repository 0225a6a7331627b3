"""The server's token signing keys (ES384), shared by every process and node through MongoDB
(``storage/security_store.py``) and published as a JWKS.

Rotation never invalidates a token in flight: a new key signs from the moment it is added, and the keys it
replaces stay published, and accepted, until every token they signed has expired (the token lifetime plus the
time a process may keep signing with a key it cached). A key is rotated when it is older than
``KEY_MAX_AGE``, or on demand (:meth:`SigningKeys.rotate`).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey

from fhir_server.storage.documents import now_ms
from fhir_server.storage.security_store import KeyDocument, SecurityStore

ALGORITHM = "ES384"
CURVE = "P-384"
KEY_MAX_AGE = timedelta(days=30)
CACHE_SECONDS = 60.0  # how long a process trusts what it read of the key set


class SigningKeys:
    def __init__(self, store: SecurityStore, token_lifetime_seconds: int) -> None:
        self._store = store
        # retired keys stay published while a token they signed may be valid (a process may sign with the key
        # it cached for CACHE_SECONDS after another retired it)
        self._grace = timedelta(seconds=token_lifetime_seconds + 2 * CACHE_SECONDS)
        self._current: tuple[ECKey, float] | None = None
        self._verifying: dict[str, tuple[ECKey | None, float]] = {}

    async def current(self) -> ECKey:
        """The key to sign with now (created, or rotated when too old, on the way)."""
        if self._current is not None and time.monotonic() - self._current[1] < CACHE_SECONDS:
            return self._current[0]
        doc = await self._store.current_signing_key()
        if doc is None or now_ms() - doc["created"] > KEY_MAX_AGE:
            return await self.rotate()
        key = ECKey.import_key(doc["jwk"])
        self._current = (key, time.monotonic())
        return key

    async def rotate(self) -> ECKey:
        """Add a new key, which signs from now on; the keys before it stay published for the grace period."""
        key = ECKey.generate_key(CURVE, parameters={"alg": ALGORITHM, "use": "sig"}, auto_kid=True)
        created = now_ms()
        await self._store.add_signing_key(str(key.kid), key.as_dict(private=True), created)
        await self._store.retire_signing_keys(created, created, created + self._grace)
        self._current = (key, time.monotonic())
        return key

    async def verifying_key(self, kid: str) -> ECKey | None:
        """The published key ``kid`` (None: unknown or no longer accepted), read again after CACHE_SECONDS."""
        cached = self._verifying.get(kid)
        if cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        doc = await self._store.signing_key(kid)
        key = _public(doc) if doc is not None and _published(doc, now_ms()) else None
        if len(self._verifying) > 1000:  # unknown kids must not grow the cache without bound
            self._verifying.clear()
        self._verifying[kid] = (key, time.monotonic())
        return key

    async def jwks(self) -> dict[str, Any]:
        """The public keys whose tokens may still be valid (``GET /fhir/.well-known/jwks.json``)."""
        docs = await self._store.published_signing_keys(now_ms())
        if not docs:
            await self.current()
            docs = await self._store.published_signing_keys(now_ms())
        return {"keys": [_public(doc).as_dict(private=False) for doc in docs]}


def _public(doc: KeyDocument) -> ECKey:
    public = {k: v for k, v in doc["jwk"].items() if k != "d"}
    return ECKey.import_key(public)


def _published(doc: KeyDocument, now: datetime) -> bool:
    return doc.get("retired") is None or (doc.get("expires") is not None and doc["expires"] > now)

