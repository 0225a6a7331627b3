"""What the sign-in to the pages keeps in MongoDB (issue #11 item 11), so that every server process and node
agrees: one collection, ``auth_sessions``, of short-lived records, each ``_id`` = its kind and the SHA-256 of
its secret (the secret itself, a cookie value or a link's code, is never stored):

- ``session``: a signed-in person's page session (the caller, the logout form's CSRF token);
- ``link``: a single-use sign-in link of ``fhir-server signin-link`` (five minutes);
- ``login``: an OpenID Connect sign-in under way (its nonce and PKCE verifier, keyed by its ``state``).

A TTL index removes a record after its ``expires``; as MongoDB's TTL monitor runs only once a minute, every read
also asks for ``expires`` in the future. ``take`` reads and deletes in one atomic step: of two processes
redeeming the same link or state, one gets it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

SESSIONS = "auth_sessions"
Record = dict[str, Any]


class SessionStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._records = db[SESSIONS]

    async def ensure_indexes(self) -> None:
        await self._records.create_indexes([IndexModel([("expires", ASCENDING)], expireAfterSeconds=0)])

    async def add(self, kind: str, key: str, data: Record, expires: datetime) -> None:
        await self._records.insert_one({"_id": _id(kind, key), "data": data, "expires": expires})

    async def find(self, kind: str, key: str, now: datetime) -> Record | None:
        doc = await self._records.find_one({"_id": _id(kind, key), "expires": {"$gt": now}})
        return None if doc is None else dict(doc["data"])

    async def take(self, kind: str, key: str, now: datetime) -> Record | None:
        """The record, deleted on the way (None: unknown, expired, or taken before)."""
        doc = await self._records.find_one_and_delete({"_id": _id(kind, key), "expires": {"$gt": now}})
        return None if doc is None else dict(doc["data"])

    async def remove(self, kind: str, key: str) -> None:
        await self._records.delete_one({"_id": _id(kind, key)})


def _id(kind: str, key: str) -> str:
    return f"{kind}:{key}"
