"""People sign in to the pages with an existing OpenID Connect identity provider (issue #11 item 11): the
authorization code flow with PKCE (OpenID Connect Core 1.0 section 3.1, https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth;
RFC 7636 S256), by Authlib's OAuth 2.0 client (the authorization URL, the code exchange at the token endpoint
with the client's secret) and Authlib's ID token claims (``CodeIDToken``).

The provider is ``FHIR_AUTH_ISSUER``, found by discovery at ``{issuer}/.well-known/openid-configuration`` (whose
``issuer`` must be that same string, OpenID Connect Discovery section 4.3); the server is registered there as
the client ``FHIR_OIDC_CLIENT_ID`` with the redirect URI ``{pages}/signin/callback``. The ID token is checked
as every JWT this server accepts (an asymmetric signature by a key of the provider's JWKS chosen by ``kid``,
``jwt_checks.py``), then ``iss``, ``aud`` (the client id), ``azp``, ``exp``, ``iat``, the ``nonce`` of this
sign-in and ``at_hash``. Role and center come from the claims ``FHIR_AUTH_ROLE_CLAIM`` and
``FHIR_AUTH_CENTER_CLAIM``, exactly as for the provider's access tokens; an ID token carries no SMART scopes, so
a person's session may do what the role allows.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns, on import, when it falls back to httpx (the HTTP client
    # this project pins; httpx2 is not on the package index this project installs from). Without this, every
    # command of the README printed that warning to a newcomer.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc.errors import JoseError

from fhir_server.permissions import Caller
from fhir_server.security.access_tokens import IdentityProvider, provider_caller
from fhir_server.security.jwt_checks import LEEWAY_SECONDS, TokenError, now, unverified, verified
from fhir_server.security.remote_keys import RemoteKeySets
from fhir_server.security.roles import role_caps
from fhir_server.security.sessions import PendingLogin

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_SECONDS = 3600.0  # how long the provider's configuration is trusted before it is read again
_NEEDED = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class SignInError(Exception):
    """A sign-in that cannot finish; the message is for the person (it says nothing secret)."""


class ProviderUnavailable(SignInError):
    """The identity provider cannot be reached or answers with a server error: try again later."""


@dataclass(frozen=True)
class OidcClient:
    """This server as a client of the identity provider (settings ``FHIR_OIDC_*``)."""

    client_id: str
    client_secret: str | None
    scope: str


class OidcLogin:
    def __init__(self, client: OidcClient, provider: IdentityProvider) -> None:
        self.client = client
        self.provider = provider
        self._transport: httpx.AsyncBaseTransport | None = None
        self._http = httpx.AsyncClient(timeout=10, follow_redirects=False)
        self._keys = RemoteKeySets(self._http)
        self._metadata: tuple[dict[str, Any], float] | None = None

    def use_transport(self, transport: httpx.AsyncBaseTransport) -> None:
        """Talk to the provider through ``transport`` from now on (tests serve a provider of their own)."""
        self._transport = transport
        self._http = httpx.AsyncClient(transport=transport, timeout=10)
        self._keys = RemoteKeySets(self._http)
        self._metadata = None

    async def authorization_url(self, login: PendingLogin, redirect_uri: str) -> str:
        """Where to send the person: the provider's authorization endpoint with this sign-in's state, nonce
        and PKCE challenge."""
        metadata = await self.metadata()
        async with self._oauth(redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(metadata["authorization_endpoint"], state=login.state,
                                                    code_verifier=login.code_verifier, nonce=login.nonce)
        return str(url)

    async def caller(self, code: str, login: PendingLogin, redirect_uri: str) -> Caller:
        """The person the provider's ``code`` names, once the code is exchanged (with the PKCE verifier) and the
        ID token checked; ``SignInError`` or ``Forbidden`` (no role of this server) otherwise."""
        metadata = await self.metadata()
        try:
            async with self._oauth(redirect_uri) as oauth:
                token = await oauth.fetch_token(metadata["token_endpoint"], grant_type="authorization_code",
                                                code=code, code_verifier=login.code_verifier)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the identity provider's token endpoint cannot be used: {exc}") from exc
        except (OAuthError, ValueError) as exc:
            raise SignInError(f"the identity provider refused the sign-in: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError("the identity provider sent no ID token (is 'openid' in FHIR_OIDC_SCOPE?)")
        claims = await self._checked(id_token, metadata["jwks_uri"], login.nonce, token.get("access_token"))
        person = provider_caller(claims, self.provider, frozenset())
        return dataclasses.replace(person, scopes=frozenset(str(s) for s in role_caps(person.role)))

    async def metadata(self) -> dict[str, Any]:
        """The provider's OpenID configuration, read by discovery and kept for ``DISCOVERY_SECONDS``."""
        if self._metadata is not None and time.monotonic() - self._metadata[1] < DISCOVERY_SECONDS:
            return self._metadata[0]
        url = self.provider.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            metadata = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"the identity provider's configuration at {url} cannot be read: {exc}") \
                from exc
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.provider.issuer:
            raise SignInError(f"{url} names another issuer than FHIR_AUTH_ISSUER ({self.provider.issuer})")
        missing = [name for name in _NEEDED if not isinstance(metadata.get(name), str)]
        if missing:
            raise SignInError(f"{url} names no {', '.join(missing)}")
        self._metadata = (metadata, time.monotonic())
        return metadata

    def _oauth(self, redirect_uri: str) -> AsyncOAuth2Client:
        secret = self.client.client_secret
        return AsyncOAuth2Client(client_id=self.client.client_id, client_secret=secret, scope=self.client.scope,
                                 redirect_uri=redirect_uri, code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_basic" if secret else "none",
                                 transport=self._transport, timeout=10)

    async def _checked(self, id_token: str, jwks_uri: str, nonce: str, access_token: Any) -> dict[str, Any]:
        try:
            header, _ = unverified(id_token)
            key = await self._keys.key(jwks_uri, header["kid"])
            if key is None:
                raise TokenError(f"the identity provider publishes no key {header['kid']}")
            claims = verified(id_token, key)
            options: dict[str, Any] = {"iss": {"essential": True, "value": self.provider.issuer},
                                       "aud": {"essential": True, "value": self.client.client_id},
                                       "nonce": {"essential": True, "value": nonce}}
            params = {"nonce": nonce, "client_id": self.client.client_id}
            if isinstance(access_token, str):
                params["access_token"] = access_token
            CodeIDToken(claims, header, options, params).validate(now=now(), leeway=LEEWAY_SECONDS)
        except (TokenError, JoseError) as exc:
            raise SignInError(f"the ID token is not accepted: {exc}") from exc
        return claims

    async def close(self) -> None:
        await self._http.aclose()
