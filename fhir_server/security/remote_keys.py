"""Public keys published at a URL: a client's ``jwks_uri`` and the identity provider's ``FHIR_AUTH_JWKS_URI``.

A key set is cached for ``CACHE_SECONDS``; a ``kid`` it does not hold makes it fetched again at once (the
publisher rotated its keys), but at most once per ``REFETCH_SECONDS`` per URL, so that tokens with made-up
``kid`` values cannot make this server hammer the publisher. The HTTP client is injectable (tests give one with
a transport of their own).
"""

from __future__ import annotations

import logging
import time

import httpx
from joserfc.jwk import Key, KeySet

from fhir_server.security.clients import public_key_set

log = logging.getLogger(__name__)
CACHE_SECONDS = 300.0
REFETCH_SECONDS = 10.0


class RemoteKeySets:
    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self._http = http
        self._sets: dict[str, tuple[KeySet | None, float]] = {}

    def use_http(self, http: httpx.AsyncClient) -> None:
        """Fetch with ``http`` from now on (tests: a client with a transport of their own)."""
        self._http = http
        self._sets.clear()

    async def key(self, uri: str, kid: str) -> Key | None:
        """The key ``kid`` published at ``uri``; None when it is not there (or the URL cannot be read)."""
        cached = self._sets.get(uri)
        if cached is None or _stale(cached, kid):
            self._sets[uri] = (await self._fetch(uri), time.monotonic())
        key_set = self._sets[uri][0]
        return _find(key_set, kid) if key_set is not None else None

    async def _fetch(self, uri: str) -> KeySet | None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10, follow_redirects=False)
        try:
            response = await self._http.get(uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            return public_key_set(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("The key set at %s cannot be used: %s", uri, exc)
            return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _stale(cached: tuple[KeySet | None, float], kid: str) -> bool:
    age = time.monotonic() - cached[1]
    return age > CACHE_SECONDS or (age > REFETCH_SECONDS and not _holds(cached[0], kid))


def _holds(key_set: KeySet | None, kid: str) -> bool:
    return key_set is not None and _find(key_set, kid) is not None


def _find(key_set: KeySet, kid: str) -> Key | None:
    return next((key for key in key_set if key.kid == kid), None)
