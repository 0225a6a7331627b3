"""The registered clients: ``FHIR_CLIENTS_FILE`` (default ``.data/clients.json``), re-read when it changes.

```json
{"clients": [
  {"client_id": "ehr-fr-poi", "role": "ehr", "center": "FR-POI", "jwks": {"keys": [<public JWK with kid>]}},
  {"client_id": "research-1", "role": "researcher", "jwks_uri": "https://...", "scope": "system/*.rs"}
]}
```

``role`` is ``ehr`` (which needs ``center``), ``researcher``, ``maintainer`` or ``admin``; ``scope`` (optional)
caps what the client may be granted; ``jwks`` (public keys, each with a ``kid``) or ``jwks_uri``. A malformed
file is an error naming the entry (at start: the server does not start), never a silent default.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.permissions import Role
from fhir_server.security.roles import ROLES, role_caps
from fhir_server.security.scopes import Scope, ScopeError, narrowed, parse_scopes

log = logging.getLogger(__name__)
_FIELDS = {"client_id", "role", "center", "jwks", "jwks_uri", "scope", "description"}


class ClientsFileError(ValueError):
    """The clients file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Client:
    client_id: str
    role: Role
    center: str | None
    jwks: KeySet | None  # its public keys, or
    jwks_uri: str | None  # where they are published
    caps: tuple[Scope, ...]  # the widest scopes it may be granted: its role's, narrowed by its ``scope``


class ClientRegistry:
    """The clients of one file, re-read when its modification time or size changes (no restart). A missing
    file means no clients."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._clients: dict[str, Client] = {}
        self._error: ClientsFileError | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if it changed; raises ``ClientsFileError`` when it is malformed."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._clients, self._error = None, {}, None
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a replaced file is a new inode
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._clients, self._error = read_clients(self.path), None
            except ClientsFileError as exc:
                log.error("%s", exc)  # until it is fixed, no client is known (fail closed)
                self._clients, self._error = {}, exc
        if self._error is not None:
            raise self._error

    def get(self, client_id: str) -> Client | None:
        self.refresh()
        return self._clients.get(client_id)


def read_clients(path: Path) -> dict[str, Client]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ClientsFileError(f"{path}: not a readable JSON file ({exc})") from exc
    entries = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ClientsFileError(f'{path}: expected {{"clients": [...]}}')
    clients: dict[str, Client] = {}
    for index, entry in enumerate(entries):
        name = entry.get("client_id") if isinstance(entry, dict) else None
        where = f"{path}: clients[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        try:
            client = _client(entry)
        except ValueError as exc:
            raise ClientsFileError(f"{where}: {exc}") from exc
        if client.client_id in clients:
            raise ClientsFileError(f"{where}: client_id {client.client_id} is registered twice")
        clients[client.client_id] = client
    return clients


def _client(entry: Any) -> Client:
    if not isinstance(entry, dict):
        raise ValueError("an entry is a JSON object")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ValueError("client_id is required (a non-empty string)")
    role = _role(entry.get("role"))
    center = entry.get("center")
    if role is Role.EHR and (not isinstance(center, str) or not center.strip()):
        raise ValueError("an ehr client needs its center (the code of the center identifier, e.g. FR-POI)")
    if center is not None and (role is not Role.EHR or not isinstance(center, str)):
        raise ValueError("only an ehr client has a center")
    jwks, jwks_uri = _keys(entry)
    return Client(client_id, role, center, jwks, jwks_uri, tuple(_caps(role, entry.get("scope"))))


def _role(value: Any) -> Role:
    if value not in [r.value for r in ROLES]:
        raise ValueError(f"role must be one of {', '.join(r.value for r in ROLES)}, not {value!r}")
    return Role(value)


def _keys(entry: dict[str, Any]) -> tuple[KeySet | None, str | None]:
    jwks, jwks_uri = entry.get("jwks"), entry.get("jwks_uri")
    if (jwks is None) == (jwks_uri is None):
        raise ValueError("give either jwks (the client's public keys) or jwks_uri")
    if jwks_uri is not None:
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("jwks_uri must be an http(s) URL")
        return None, jwks_uri
    return public_key_set(jwks), None


def public_key_set(jwks: Any) -> KeySet:
    """A JWKS of public keys, each with a ``kid``; raises ``ValueError`` saying what is wrong."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError('jwks must be {"keys": [...]} with at least one key')
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str):
            raise ValueError("every key of jwks needs its kid")
        if "d" in key:
            raise ValueError(f"key {key['kid']} holds private key material: register only the public key")
    try:
        return KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"jwks holds a key that cannot be read: {exc}") from exc


def _caps(role: Role, scope: Any) -> list[Scope]:
    caps = role_caps(role)
    if scope is None:
        return caps
    if not isinstance(scope, str):
        raise ValueError("scope is a space-separated string of SMART scopes")
    try:
        wanted = parse_scopes(scope)
    except ScopeError as exc:
        raise ValueError(str(exc)) from exc
    return narrowed(wanted, caps)
