"""Registering a client: a new key pair, the public key added to the clients file, the private JWK written to a
file of its own (readable by its owner only) for the client to sign its assertions with.

``fhir-server client add`` does it for a hospital's EHR integration; the first start in ``smart`` mode does it
for ``dev-admin`` when there is no clients file yet, so that a newcomer's ``fhir-server token`` works at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from fhir_server.permissions import Role
from fhir_server.security.clients import ClientsFileError, read_clients
from fhir_server.settings import Settings

DEV_ADMIN = "dev-admin"
ALGORITHM = "ES384"


def key_path(clients_file: Path, client_id: str) -> Path:
    """Where a client's private key is kept by default: ``keys/<client_id>.jwk.json`` beside the clients file."""
    return clients_file.parent / "keys" / f"{client_id}.jwk.json"


def new_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"alg": ALGORITHM, "use": "sig"}, auto_kid=True)


def register_client(clients_file: Path, client_id: str, role: Role, *, center: str | None = None,
                    scope: str | None = None, private_key_file: Path | None = None) -> Path:
    """Add a client with a new key pair; the path of its private key. Raises ``ClientsFileError`` when the
    entry would make the file unusable (an unknown role, an ehr without center, a duplicate id...)."""
    key = new_key()
    entry: dict[str, Any] = {"client_id": client_id, "role": role.value}
    if center:
        entry["center"] = center
    if scope:
        entry["scope"] = scope
    entry["jwks"] = {"keys": [key.as_dict(private=False)]}
    data = json.loads(clients_file.read_text(encoding="utf-8")) if clients_file.exists() else {"clients": []}
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise ClientsFileError(f'{clients_file}: expected {{"clients": [...]}}')
    data["clients"].append(entry)
    _write(clients_file, json.dumps(data, indent=2) + "\n", check=True)
    target = private_key_file or key_path(clients_file, client_id)
    _write(target, json.dumps(key.as_dict(private=True)) + "\n", private=True)
    return target


def ensure_dev_admin(settings: Settings) -> Path | None:
    """On the first start in ``smart`` mode (no clients file yet): register ``dev-admin``; its key's path."""
    if settings.auth_mode != "smart" or settings.clients_path.exists():
        return None
    return register_client(settings.clients_path, DEV_ADMIN, Role.ADMIN)


def load_private_key(path: Path) -> ECKey:
    """A client's private key as ``register_client`` wrote it."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return ECKey.import_key(data)


def _write(path: Path, text: str, *, private: bool = False, check: bool = False) -> None:
    """Write ``text`` atomically (a reader never sees half a file); ``check``: the result must be a valid
    clients file, else nothing is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if private:
            os.chmod(tmp, 0o600)
        if check:
            read_clients(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
