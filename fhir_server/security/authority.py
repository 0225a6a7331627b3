"""What the token endpoint, the discovery documents and every request's bearer token ask of authentication:
one object per server process, built at start (a malformed clients file stops the start, naming the entry).

The token endpoint follows SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token): a form POST with
``grant_type=client_credentials``, ``scope``, ``client_assertion_type`` (JWT bearer) and ``client_assertion``;
errors are RFC 6749 section 5.2's (``invalid_request``, ``invalid_client``, ``unsupported_grant_type``,
``invalid_scope``). The scopes granted are those asked, narrowed to what the client's role and its registered
``scope`` allow; a scope of which nothing can be granted is ``invalid_scope``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.errors import Unauthorized
from fhir_server.permissions import Caller
from fhir_server.security.access_tokens import AccessTokens, IdentityProvider
from fhir_server.security.assertions import TokenRequestError, authenticate_client
from fhir_server.security.clients import Client, ClientRegistry, ClientsFileError
from fhir_server.security.jwt_checks import ASYMMETRIC, TokenError, now, unverified
from fhir_server.security.oidc import OidcClient, OidcLogin
from fhir_server.security.remote_keys import RemoteKeySets
from fhir_server.security.scopes import Scope, ScopeError, narrowed, parse_scopes, scope_text
from fhir_server.security.sessions import PageSessions
from fhir_server.security.signing import SigningKeys
from fhir_server.settings import Settings
from fhir_server.storage.security_store import SecurityStore

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "auth/token"
JWKS_PATH = ".well-known/jwks.json"
_FORM_FIELDS = ("grant_type", "scope", "client_assertion_type", "client_assertion")


class Authority:
    def __init__(self, settings: Settings, store: SecurityStore, remote: RemoteKeySets | None = None) -> None:
        self.settings = settings
        self.clients = ClientRegistry(settings.clients_path)
        self.remote = remote or RemoteKeySets()
        self.keys = SigningKeys(store, settings.token_lifetime_seconds)
        self.tokens = AccessTokens(self.keys, self.remote, settings.token_lifetime_seconds, _provider(settings))
        # people signed in to the pages: by a sign-in link, or by the identity provider (when configured)
        self.sessions = PageSessions(store.sessions, settings.session_lifetime_seconds)
        self.oidc = _oidc(settings)
        self._store = store

    async def token(self, form: Sequence[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """The token response to the token endpoint's form; raises ``TokenRequestError``."""
        fields = _fields(form)
        if fields.get("grant_type") != "client_credentials":
            raise TokenRequestError("unsupported_grant_type" if fields.get("grant_type") else "invalid_request",
                                    "grant_type must be client_credentials")
        if fields.get("client_assertion_type") != JWT_BEARER or not fields.get("client_assertion"):
            raise TokenRequestError("invalid_client", f"authenticate with client_assertion_type={JWT_BEARER} "
                                                      "and a signed client_assertion (private_key_jwt)")
        at = now()
        client = await authenticate_client(fields["client_assertion"], f"{base_url}/{TOKEN_PATH}", self.clients,
                                           self.remote, self._store, at)
        granted = _granted(fields.get("scope", ""), client.caps)
        token = await self.tokens.issue(client, granted, base_url, at)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.tokens.lifetime,
                "scope": scope_text(granted)}

    def claimed_client(self, form: Sequence[tuple[str, str]]) -> tuple[str, Client | None] | None:
        """Who a token request says it is: the ``sub`` of its client assertion (signature NOT checked) and the
        registered client of that id, if any. For the token endpoint's audit trail only, never to grant."""
        try:
            _, claims = unverified(_fields(form).get("client_assertion") or "")
        except TokenError:
            return None
        claimed = claims.get("sub")
        if not isinstance(claimed, str) or not claimed:
            return None
        try:
            return claimed[:200], self.clients.get(claimed)
        except ClientsFileError:  # a broken clients file refuses every client; the attempt is still audited
            return claimed[:200], None

    async def caller(self, authorization: str | None, base_url: str) -> Caller:
        """The caller of a request with this ``Authorization`` header."""
        if not authorization:
            raise Unauthorized("This server needs an access token: Authorization: Bearer <token> (see "
                               f"{base_url}/.well-known/smart-configuration)", token_given=False)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be: Bearer <access token>", token_given=False)
        return await self.tokens.caller(token.strip(), base_url, now())

    def smart_configuration(self, base_url: str) -> dict[str, Any]:
        """``/.well-known/smart-configuration`` (https://hl7.org/fhir/smart-app-launch/conformance.html)."""
        return {
            "issuer": base_url,
            "jwks_uri": f"{base_url}/{JWKS_PATH}",
            "token_endpoint": f"{base_url}/{TOKEN_PATH}",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ASYMMETRIC),
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
        }

    async def jwks(self) -> dict[str, Any]:
        return await self.keys.jwks()

    async def close(self) -> None:
        await self.remote.close()
        if self.oidc is not None:
            await self.oidc.close()


def _fields(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in form:
        if name in fields and name in _FORM_FIELDS:
            raise TokenRequestError("invalid_request", f"{name} is given more than once")
        fields[name] = value
    return fields


def _granted(scope: str, caps: Sequence[Scope]) -> list[Scope]:
    if not scope.strip():
        raise TokenRequestError("invalid_scope", "scope is required (e.g. system/*.rs)")
    try:
        requested = parse_scopes(scope)
    except ScopeError as exc:
        raise TokenRequestError("invalid_scope", str(exc)) from exc
    granted: list[Scope] = []
    for wanted in requested:
        allowed = narrowed([wanted], caps) if wanted.context == "system" else []
        if not allowed:
            raise TokenRequestError("invalid_scope", f"this client may not have {wanted}")
        granted.extend(allowed)
    return sorted(set(granted))


def _provider(settings: Settings) -> IdentityProvider | None:
    if not (settings.auth_issuer and settings.auth_jwks_uri):
        return None
    return IdentityProvider(settings.auth_issuer, settings.auth_jwks_uri, settings.auth_audience,
                            settings.auth_role_claim, settings.auth_center_claim)


def _oidc(settings: Settings) -> OidcLogin | None:
    """The OpenID Connect sign-in of people, with ``FHIR_AUTH_ISSUER`` and ``FHIR_OIDC_CLIENT_ID`` set."""
    provider = _provider(settings)
    if provider is None or not settings.oidc_client_id:
        return None
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return OidcLogin(OidcClient(settings.oidc_client_id, secret, settings.oidc_scope), provider)
