"""Client authentication at the token endpoint: RFC 7523 ``private_key_jwt`` as SMART Backend Services asks
(https://hl7.org/fhir/smart-app-launch/backend-services.html#authenticating-to-the-token-endpoint).

The assertion is a JWT with ``iss`` = ``sub`` = the client id, ``aud`` = the token endpoint's URL, ``exp`` at
most five minutes ahead and a ``jti``, signed with a key of the client's JWKS chosen by ``kid``. A ``jti`` is
accepted once: the first use is recorded in MongoDB until the assertion expires, so a replay to any server
process fails. Every failure is ``invalid_client`` (RFC 6749 section 5.2).
"""

from __future__ import annotations

from datetime import UTC, datetime

from joserfc.jwk import Key

from fhir_server.security.clients import Client, ClientRegistry, ClientsFileError
from fhir_server.security.jwt_checks import TokenError, check_audience, check_times, unverified, verified
from fhir_server.security.remote_keys import RemoteKeySets
from fhir_server.storage.security_store import SecurityStore

MAX_ASSERTION_LIFETIME = 300


class TokenRequestError(Exception):
    """An RFC 6749 section 5.2 error response: ``error`` code and a description for the client."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


async def authenticate_client(assertion: str, token_url: str, clients: ClientRegistry, remote: RemoteKeySets,
                              store: SecurityStore, at: int) -> Client:
    try:
        header, claims = unverified(assertion)
        client = _client(clients, claims)
        key = await _key(client, header["kid"], remote)
        claims = verified(assertion, key)
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise TokenError("iss and sub must both be the client_id")
        check_audience(claims, token_url)
        check_times(claims, at, max_lifetime=MAX_ASSERTION_LIFETIME)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenError("jti is required")
    except TokenError as exc:
        raise TokenRequestError("invalid_client", f"client assertion refused: {exc}") from exc
    expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
    if not await store.first_use_of_assertion(client.client_id, jti, expires):
        raise TokenRequestError("invalid_client", "client assertion refused: this jti was used before")
    return client


def _client(clients: ClientRegistry, claims: dict[str, object]) -> Client:
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise TokenError("iss and sub must both be the client_id")
    try:
        client = clients.get(client_id)
    except ClientsFileError as exc:  # logged by the registry; the client learns nothing of the file
        raise TokenError(f"unknown client {client_id}") from exc
    if client is None:
        raise TokenError(f"unknown client {client_id}")
    return client


async def _key(client: Client, kid: str, remote: RemoteKeySets) -> Key:
    key: Key | None = None
    if client.jwks is not None:
        key = next((k for k in client.jwks if k.kid == kid), None)
    elif client.jwks_uri is not None:
        key = await remote.key(client.jwks_uri, kid)
    if key is None:
        raise TokenError(f"no key {kid} is registered for client {client.client_id}")
    return key
