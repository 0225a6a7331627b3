"""People signed in to the pages (issue #11 item 11): page sessions, single-use sign-in links, and the
OpenID Connect sign-ins under way, all kept server-side in MongoDB (``storage/session_store.py``).

Why server-side records rather than a signed stateless cookie: every node reads the same records, so there is
no secret to share between nodes; logout ends a session everywhere at once (a stateless cookie stays valid until
it expires, whoever copied it); and a sign-in link or an OIDC ``state`` must be usable once across all
processes, which needs a shared record anyway. The cookie holds 256 random bits; MongoDB keeps only their
SHA-256, so a copy of the database opens no session. Reading a session costs one indexed lookup per page
request: pages are for people, not for the API's request rates.

A sign-in link is Jupyter's token link (https://jupyter-server.readthedocs.io/en/latest/operators/security.html)
made single-use and short: its code opens one session within ``SIGNIN_LINK_SECONDS`` and then is gone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.permissions import Caller, Role
from fhir_server.storage.session_store import SessionStore

SIGNIN_LINK_SECONDS = 300  # a sign-in link opens a session within five minutes, once
LOGIN_SECONDS = 600  # time a person has at the identity provider to sign in
_SESSION, _LINK, _LOGIN = "session", "link", "login"


@dataclass(frozen=True)
class PageSession:
    caller: Caller
    csrf: str  # the token the logout form carries (a cross-site form cannot know it)
    via: str  # how the person signed in: "link" or "oidc"


@dataclass(frozen=True)
class PendingLogin:
    """An OpenID Connect sign-in under way: what the callback needs to finish it."""

    state: str
    nonce: str
    code_verifier: str  # PKCE (RFC 7636)
    next_path: str  # the page to show once signed in


def utc_now() -> datetime:
    return datetime.now(UTC)


class PageSessions:
    def __init__(self, store: SessionStore, lifetime_seconds: int,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self.lifetime = lifetime_seconds
        self.clock = clock  # tests move it forward instead of waiting

    async def open(self, caller: Caller, via: str) -> str:
        """A new session of ``caller``; its secret (the cookie's value)."""
        secret = secrets.token_urlsafe(32)
        data = {"caller": _dump(caller), "csrf": secrets.token_urlsafe(24), "via": via}
        await self._store.add(_SESSION, _digest(secret), data, self.clock() + timedelta(seconds=self.lifetime))
        return secret

    async def session(self, secret: str | None) -> PageSession | None:
        """The session of a cookie's value (None: none, expired or closed)."""
        if not secret:
            return None
        data = await self._store.find(_SESSION, _digest(secret), self.clock())
        return None if data is None else PageSession(_load(data["caller"]), data["csrf"], data["via"])

    async def close(self, secret: str) -> None:
        await self._store.remove(_SESSION, _digest(secret))

    async def new_link(self, caller: Caller) -> str:
        """A sign-in link's code: it opens a session of ``caller`` once, within ``SIGNIN_LINK_SECONDS``."""
        code = secrets.token_urlsafe(32)
        await self._store.add(_LINK, _digest(code), {"caller": _dump(caller)},
                              self.clock() + timedelta(seconds=SIGNIN_LINK_SECONDS))
        return code

    async def redeem_link(self, code: str) -> Caller | None:
        """The caller of a link, which is used up (None: unknown, expired or used before)."""
        data = await self._store.take(_LINK, _digest(code), self.clock()) if code else None
        return None if data is None else _load(data["caller"])

    async def begin_login(self, next_path: str) -> PendingLogin:
        login = PendingLogin(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                             next_path)
        data = {"nonce": login.nonce, "code_verifier": login.code_verifier, "next": next_path}
        await self._store.add(_LOGIN, _digest(login.state), data, self.clock() + timedelta(seconds=LOGIN_SECONDS))
        return login

    async def finish_login(self, state: str) -> PendingLogin | None:
        """The sign-in ``state`` names, used up (a replayed callback finds nothing)."""
        data = await self._store.take(_LOGIN, _digest(state), self.clock()) if state else None
        return None if data is None else PendingLogin(state, data["nonce"], data["code_verifier"], data["next"])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _dump(caller: Caller) -> dict[str, Any]:
    return {"id": caller.id, "role": caller.role.value, "center": caller.center, "scopes": sorted(caller.scopes)}


def _load(data: dict[str, Any]) -> Caller:
    return Caller(id=data["id"], role=Role(data["role"]), scopes=frozenset(data["scopes"]), center=data["center"])
