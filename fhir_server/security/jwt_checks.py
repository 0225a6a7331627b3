"""The checks every JWT this server accepts passes, whoever signed it (a client's assertion, this server's or an
identity provider's access token), done with joserfc (RFC 7515/7519; no hand-written JWS): only asymmetric
algorithms (``none`` and HMAC are refused: a public key must never serve as an HMAC secret), the key chosen by
``kid``, ``exp`` required and in the future, ``nbf`` and ``iat`` not in the future.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import extract_compact

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY_SECONDS = 5  # clock skew tolerated between this server and the signer
Claims = dict[str, Any]


class TokenError(ValueError):
    """A JWT that is not acceptable; the message says why (it is shown to the client)."""


def now() -> int:
    return int(time.time())


def unverified(token: str) -> tuple[dict[str, Any], Claims]:
    """Header and claims, read before the signature is checked (to choose the key): use nothing else of them."""
    try:
        parts = extract_compact(token.encode("ascii"))
        claims = json.loads(parts.payload or b"")
    except (JoseError, UnicodeError, ValueError) as exc:
        raise TokenError("not a signed JWT (JWS compact serialization)") from exc
    header = parts.protected
    if not isinstance(claims, dict):
        raise TokenError("the JWT's payload is not a JSON object")
    if header.get("alg") not in ASYMMETRIC:
        raise TokenError(f"alg {header.get('alg')!r} is not accepted (use one of {', '.join(ASYMMETRIC)})")
    if not isinstance(header.get("kid"), str):
        raise TokenError("the JWT's header has no kid")
    return header, claims


def verified(token: str, key: Key) -> Claims:
    """The claims of ``token`` once its signature by ``key`` is checked."""
    try:
        return dict(jwt.decode(token, key, algorithms=list(ASYMMETRIC)).claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenError(f"the signature cannot be verified with key {key.kid}") from exc


def check_times(claims: Claims, at: int, *, max_lifetime: int | None = None) -> None:
    """``exp`` required and after ``at``; ``nbf``/``iat`` not after it; ``exp`` at most ``max_lifetime`` ahead."""
    expires = claims.get("exp")
    if not isinstance(expires, (int, float)) or not _number(expires):
        raise TokenError("exp is required (a NumericDate)")
    if expires <= at - LEEWAY_SECONDS:
        raise TokenError("the JWT has expired")
    if max_lifetime is not None and expires > at + max_lifetime + LEEWAY_SECONDS:
        raise TokenError(f"exp is more than {max_lifetime} seconds ahead")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, (int, float)) or not _number(value)
                                  or value > at + LEEWAY_SECONDS):
            raise TokenError(f"{name} is in the future")


def check_audience(claims: Claims, audience: str) -> None:
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenError(f"aud must be {audience}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
