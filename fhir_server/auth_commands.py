"""``fhir-server token``, ``fhir-server signin-link`` and ``fhir-server client add``: SMART Backend Services
from the command line.

``token`` runs the real backend-services flow against a running server (discovery, a client assertion signed
with the client's private key, the token endpoint) and prints the access token, for ``curl -H "Authorization:
Bearer $TOKEN"``. ``client add`` registers a client (a hospital's EHR integration, a researcher's tool...): a new
key pair, its public key in the clients file (``FHIR_CLIENTS_FILE``, re-read by the server without a restart),
its private key in a file to hand to the client. ``signin-link`` gets a token the same way and asks the server for
a single-use link (five minutes) that signs a person in to the pages as that client (Jupyter's token link).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.cli import command
from fhir_server.permissions import Role
from fhir_server.security.clients import ClientsFileError
from fhir_server.security.registration import DEV_ADMIN, key_path, load_private_key, register_client
from fhir_server.security.roles import ROLES
from fhir_server.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8080/fhir"
DEFAULT_SCOPE = "system/*.cruds"


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """``--client`` and ``--key``: who a command authenticates as (import-csv uses them too)."""
    parser.add_argument("--client", default=DEV_ADMIN, help=f"client id (default {DEV_ADMIN})")
    parser.add_argument("--key", type=Path, default=None,
                        help="the client's private JWK (default: keys/<client>.jwk.json beside the clients file)")


def client_key_path(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.key) if args.key else key_path(settings.clients_path, args.client)


def _token_args(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--scope", default=DEFAULT_SCOPE, help=f"scopes to ask for (default {DEFAULT_SCOPE})")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the FHIR base (default {DEFAULT_URL})")


@command("token", _token_args)
def token(args: argparse.Namespace, settings: Settings) -> int:
    """Print an access token (SMART Backend Services flow against the running server)."""
    return _with_token(args, settings, lambda http, answer: answer.value)


@command("signin-link", _token_args)
def signin_link(args: argparse.Namespace, settings: Settings) -> int:
    """Print a single-use link (valid 5 minutes) that signs a person in to the pages as the client."""
    from fhir_server.security.client import fetch_signin_link

    return _with_token(args, settings, lambda http, answer: fetch_signin_link(http, args.url, answer))


def _with_token(args: argparse.Namespace, settings: Settings, then: Callable[[Any, Any], str]) -> int:
    """Get a token for ``--client`` from the server at ``--url``; print what ``then`` makes of it."""
    import httpx

    from fhir_server.security.client import TokenRequestFailed, fetch_token

    path = client_key_path(args, settings)
    try:
        key = load_private_key(path)
    except (OSError, ValueError) as exc:
        print(f"no usable private key for {args.client} at {path}: {exc} (fhir-server client add, or --key)",
              file=sys.stderr)
        return 2
    try:
        with httpx.Client(timeout=30) as http:
            answer = fetch_token(http, args.url.rstrip("/"), args.client, key, args.scope)
            if answer is None:
                print(f"{args.url} takes no tokens (FHIR_AUTH_MODE=none)", file=sys.stderr)
                return 1
            print(then(http, answer))
    except (httpx.HTTPError, TokenRequestFailed) as exc:
        print(f"{args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["add"], help="add: register a new client")
    parser.add_argument("--id", required=True, dest="client_id", help="the client id, e.g. ehr-fr-poi")
    parser.add_argument("--role", required=True, choices=[r.value for r in ROLES])
    parser.add_argument("--center", help="an ehr client's center code (the center identifier), e.g. FR-POI")
    parser.add_argument("--scope", help="cap the scopes it may be granted, e.g. 'system/*.rs'")
    parser.add_argument("--key-out", type=Path, default=None,
                        help="where to write its private JWK (default: keys/<id>.jwk.json beside the clients file)")


@command("client", _client_args)
def client(args: argparse.Namespace, settings: Settings) -> int:
    """Register a client: a key pair, the public key in the clients file, the private JWK in a file."""
    clients_file = settings.clients_path
    try:
        written = register_client(clients_file, args.client_id, Role(args.role), center=args.center,
                                  scope=args.scope, private_key_file=args.key_out)
    except (ClientsFileError, OSError, ValueError) as exc:
        print(f"client {args.client_id} not registered: {exc}", file=sys.stderr)
        return 2
    print(f"registered {args.client_id} ({args.role}{', ' + args.center if args.center else ''}) in {clients_file}")
    print(f"its private key (give it to the client, keep it secret): {written}")
    return 0
