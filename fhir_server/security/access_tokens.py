"""Access tokens: those this server issues (ES384 JWTs signed with the shared keys of ``signing.py``) and,
with ``FHIR_AUTH_ISSUER`` and ``FHIR_AUTH_JWKS_URI`` set, those of an existing OAuth2/OIDC identity provider
(Keycloak, Entra ID...). Either becomes the request's ``Caller``: id, role, scopes, center.

This server's tokens carry ``iss`` = ``aud`` = the FHIR base URL, ``sub`` and ``client_id``, ``scope`` (what was
granted), ``role`` and, for an ``ehr`` client, ``center``. An identity provider's carry its ``iss``, ``aud`` =
``FHIR_AUTH_AUDIENCE`` (default the base URL), the role and center in the claims ``FHIR_AUTH_ROLE_CLAIM`` and
``FHIR_AUTH_CENTER_CLAIM`` (dotted paths, e.g. ``realm_access.roles``), scopes in ``scope`` or ``scp``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import Key

from fhir_server.errors import Forbidden, Unauthorized
from fhir_server.permissions import Caller, Role
from fhir_server.security.clients import Client
from fhir_server.security.jwt_checks import Claims, TokenError, check_audience, check_times, unverified, verified
from fhir_server.security.remote_keys import RemoteKeySets
from fhir_server.security.roles import ROLES
from fhir_server.security.scopes import Scope, scope_text
from fhir_server.security.signing import ALGORITHM, SigningKeys


@dataclass(frozen=True)
class IdentityProvider:
    """An external issuer whose tokens are accepted (settings ``FHIR_AUTH_*``)."""

    issuer: str
    jwks_uri: str
    audience: str | None
    role_claim: str
    center_claim: str


VERIFIED_CACHE_SIZE = 10_000


class AccessTokens:
    def __init__(self, keys: SigningKeys, remote: RemoteKeySets, lifetime_seconds: int,
                 provider: IdentityProvider | None = None) -> None:
        self._keys = keys
        self._remote = remote
        self.lifetime = lifetime_seconds
        self._provider = provider
        # A client sends its token with every request until it expires: its signature is checked once per
        # process (a P-384 verification costs more than a small search), the caller kept until ``exp`` and only
        # while the key that verified it is still the one its ``kid`` names (the signing keys and the identity
        # provider's key set are re-read as for a fresh verification): a key no longer published refuses the
        # token at once, as a fresh verification would
        self._verified: dict[tuple[str, str], _Verified] = {}

    async def issue(self, client: Client, scopes: Iterable[Scope], base_url: str, at: int) -> str:
        key = await self._keys.current()
        claims: dict[str, Any] = {
            "iss": base_url, "aud": base_url, "sub": client.client_id, "client_id": client.client_id,
            "scope": scope_text(scopes), "role": client.role.value, "iat": at, "exp": at + self.lifetime,
            "jti": uuid.uuid4().hex}
        if client.center:
            claims["center"] = client.center
        return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=[ALGORITHM])

    async def caller(self, token: str, base_url: str, at: int) -> Caller:
        """The caller a bearer token proves; ``Unauthorized`` when it proves none, ``Forbidden`` when it is valid
        but names no usable role."""
        known = self._verified.get((token, base_url))
        if known is not None and known.expires > at and await self._key(known.kid, known.by_provider) is known.key:
            return known.caller
        try:
            header, claims = unverified(token)
            by_provider = self._provider is not None and claims.get("iss") == self._provider.issuer
            key = await self._key(header["kid"], by_provider)
            if key is None:
                raise TokenError(f"the identity provider publishes no key {header['kid']}" if by_provider
                                 else f"it is signed with a key ({header['kid']}) this server does not publish")
            if by_provider and self._provider is not None:
                caller = _provider_caller(verified(token, key), self._provider, base_url, at)
            else:
                caller = _own_caller(verified(token, key), base_url, at)
        except TokenError as exc:
            raise Unauthorized(f"The access token is not accepted: {exc}") from exc
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified = {k: v for k, v in self._verified.items() if v.expires > at}
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
        self._verified[(token, base_url)] = _Verified(caller, float(claims["exp"]), header["kid"], by_provider, key)
        return caller

    async def _key(self, kid: str, by_provider: bool) -> Key | None:
        """The key that verifies a token of this ``kid`` now (None: not published): the identity provider's for a
        token it issued, else this server's; both key sets are re-read as their caches say."""
        if by_provider and self._provider is not None:
            return await self._remote.key(self._provider.jwks_uri, kid)
        return await self._keys.verifying_key(kid)


@dataclass(frozen=True)
class _Verified:
    """A token verified by this process: its caller, ``exp``, and the key that verified it."""

    caller: Caller
    expires: float
    kid: str
    by_provider: bool
    key: Key


def _own_caller(claims: Claims, base_url: str, at: int) -> Caller:
    if claims.get("iss") != base_url:
        raise TokenError(f"iss must be {base_url}")
    check_audience(claims, base_url)
    check_times(claims, at)
    return _caller(str(claims.get("sub")), claims.get("role"), claims.get("center"), _scopes(claims.get("scope")))


def _provider_caller(claims: Claims, provider: IdentityProvider, base_url: str, at: int) -> Caller:
    check_audience(claims, provider.audience or base_url)
    check_times(claims, at)
    return provider_caller(claims, provider, _scopes(claims.get("scope")) or _scopes(claims.get("scp")))


def provider_caller(claims: Claims, provider: IdentityProvider, scopes: frozenset[str]) -> Caller:
    """The caller an identity provider's token names (an access token, or the ID token of a person signing in to
    the pages): role and center from the configured claims; ``Forbidden`` when it names no usable role."""
    return _caller(str(claims.get("sub") or claims.get("client_id") or claims.get("azp")),
                   _role_value(_claim(claims, provider.role_claim)), _claim(claims, provider.center_claim), scopes)


def _claim(claims: Claims, path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _role_value(value: Any) -> Any:
    """A role claim may be one value or a list of roles of which this server knows one."""
    if isinstance(value, list):
        return next((v for v in value if v in [r.value for r in ROLES]), None)
    return value


def _scopes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _caller(caller_id: str, role: Any, center: Any, scopes: frozenset[str]) -> Caller:
    if role not in [r.value for r in ROLES]:
        raise Forbidden(f"The access token names no role of this server ({', '.join(r.value for r in ROLES)})")
    if role == Role.EHR.value and (not isinstance(center, str) or not center):
        raise Forbidden("The access token of an ehr caller names no center")
    return Caller(id=caller_id, role=Role(role), scopes=scopes, center=center if role == Role.EHR.value else None)
