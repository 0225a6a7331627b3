"""What authentication keeps in MongoDB, so that every server process and node agrees (issue #11 item 3):

- ``auth_keys``: the server's token signing keys, one document per key: ``_id`` (its ``kid``), ``jwk`` (the
  private JWK), ``created``, ``retired`` (when a newer key replaced it; None while current) and ``expires``
  (retired keys are removed by a TTL index once no token they signed can still be valid);
- ``auth_assertions``: the client assertions already used, ``_id`` = client id and ``jti``, removed by a TTL
  index after the assertion's own ``exp``: a replay within its lifetime hits the unique ``_id``, in any process;
- ``auth_sessions``: the people's page sessions, sign-in links and sign-ins under way (``session_store.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.session_store import SessionStore

SIGNING_KEYS = "auth_keys"
ASSERTIONS = "auth_assertions"
KeyDocument = dict[str, Any]


class SecurityStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._keys = db[SIGNING_KEYS]
        self._assertions = db[ASSERTIONS]
        self.sessions = SessionStore(db)

    async def ensure_indexes(self) -> None:
        await self._keys.create_indexes([IndexModel([("expires", ASCENDING)], expireAfterSeconds=0),
                                         IndexModel([("retired", ASCENDING), ("created", DESCENDING)])])
        await self._assertions.create_indexes([IndexModel([("expires", ASCENDING)], expireAfterSeconds=0)])
        await self.sessions.ensure_indexes()

    async def current_signing_key(self) -> KeyDocument | None:
        """The newest key not retired."""
        return await self._keys.find_one({"retired": None}, sort=[("created", DESCENDING), ("_id", DESCENDING)])

    async def signing_key(self, kid: str) -> KeyDocument | None:
        return await self._keys.find_one({"_id": kid})

    async def published_signing_keys(self, now: datetime) -> list[KeyDocument]:
        """Every key whose tokens may still be valid: the current ones and those retired recently."""
        query = {"$or": [{"retired": None}, {"expires": {"$gt": now}}]}
        return [doc async for doc in self._keys.find(query, sort=[("created", DESCENDING)])]

    async def add_signing_key(self, kid: str, jwk: dict[str, Any], created: datetime) -> None:
        await self._keys.insert_one({"_id": kid, "jwk": jwk, "created": created, "retired": None, "expires": None})

    async def retire_signing_keys(self, created_before: datetime, retired: datetime, expires: datetime) -> None:
        """Retire the current keys older than ``created_before`` (a newer one signs from now on); they stay
        published until ``expires``. Concurrent rotations leave the newest key current."""
        await self._keys.update_many({"retired": None, "created": {"$lt": created_before}},
                                     {"$set": {"retired": retired, "expires": expires}})

    async def first_use_of_assertion(self, client_id: str, jti: str, expires: datetime) -> bool:
        """Record a client assertion's ``jti``; False when it was used before (a replay)."""
        try:
            await self._assertions.insert_one({"_id": f"{client_id}\x1f{jti}", "expires": expires})
        except DuplicateKeyError:
            return False
        return True
