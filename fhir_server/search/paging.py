"""Keyset paging: opaque page tokens and the "rows strictly after this key" filter.

Spec: https://hl7.org/fhir/R4/http.html#paging and https://hl7.org/fhir/R4/search.html#count (the server
chooses how ``next`` links work). A token is urlsafe base64 (no padding) of compact JSON
``{"v": [sort values of the last row], "k": sort-spec fingerprint, "o": owner, "m": caller metadata}`` followed
by a truncated HMAC-SHA256 (keyed with ``secret``; an unkeyed checksum when the secret is empty). Garbage,
truncated or edited tokens, and tokens from another sort, raise ``InvalidRequest`` (400). The owner is the
caller whose search made the link (issue #11): another caller's token is ``Gone`` (410), a page link of one
client is useless to another (what it would show is filtered by that caller's access anyway).

Sort fields must be scalar per document (``_id``, ``lastUpdated``, ``sp._sort.<code>.a|d``): comparing against
a multikey array would not be a total order. Missing values sort first ascending, last descending (MongoDB's
order for null/missing); both are handled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.errors import Gone, InvalidRequest

SortSpec = Sequence[tuple[str, int]]
_MAC_BYTES = 12


def sort_values(doc: Mapping[str, Any], sort: SortSpec) -> list[Any]:
    """The values of ``sort`` fields in a stored document (dotted paths; missing -> None)."""
    return [_get_path(doc, field) for field, _ in sort]


def _get_path(doc: Mapping[str, Any], path: str) -> Any:
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _fingerprint(sort: SortSpec) -> str:
    text = ",".join(f"{field}:{direction}" for field, direction in sort)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return {"$d": moment.astimezone(UTC).isoformat()}
    if isinstance(value, Decimal128):
        return {"$n": str(value)}
    if isinstance(value, Decimal):  # a Decimal128 decoded by the server's codec
        return {"$n": str(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot encode sort value of type {type(value).__name__}")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$d"}:
            return datetime.fromisoformat(value["$d"])
        if set(value) == {"$n"}:
            return Decimal128(value["$n"])
        raise ValueError("unknown encoded value")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError("bad value")


def _mac(payload: bytes, secret: bytes) -> bytes:
    return hmac.new(secret or b"ifp-fhir-page", payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_page_token(values: Sequence[Any], sort: SortSpec, *, secret: bytes = b"",
                      meta: Mapping[str, Any] | None = None, owner: str = "") -> str:
    """Opaque token for "the page after the row whose sort values are ``values``", for ``owner`` only."""
    body = {"v": [_encode_value(v) for v in values], "k": _fingerprint(sort), "o": owner, "m": dict(meta or {})}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(payload + _mac(payload, secret)).decode().rstrip("=")


def decode_page_token(token: str, sort: SortSpec, *, secret: bytes = b"",
                      owner: str = "") -> tuple[list[Any], dict[str, Any]]:
    """(sort values, meta) of a token made by :func:`encode_page_token` for the same ``sort`` and ``owner``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(payload, secret)):
            raise ValueError("bad signature")
        body = json.loads(payload)
        if body.get("k") != _fingerprint(sort):
            raise ValueError("token was made for another sort order")
        values = [_decode_value(v) for v in body["v"]]
        if len(values) != len(sort) or not isinstance(body.get("m"), dict):
            raise ValueError("wrong shape")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Invalid page token: {exc}", code="invalid") from exc
    if body.get("o", "") != owner:
        raise Gone("This page link belongs to another client's search: run the search again", code="expired")
    return values, body["m"]


def _equal(field: str, value: Any) -> dict[str, Any]:
    return {field: None} if value is None else {field: value}


def _strictly_after(field: str, direction: int, value: Any) -> dict[str, Any] | None:
    if direction >= 0:
        return {field: {"$ne": None}} if value is None else {field: {"$gt": value}}
    if value is None:
        return None  # nothing comes after null in descending order
    return {"$or": [{field: {"$lt": value}}, {field: None}]}


def at_filter(sort: SortSpec, values: Sequence[Any]) -> dict[str, Any]:
    """MongoDB filter for rows whose sort fields all equal ``values`` (ties of a merged, multi-type page)."""
    if len(sort) != len(values):
        raise ValueError("sort and values differ in length")
    terms = [_equal(field, value) for (field, _), value in zip(sort, values, strict=True)]
    return terms[0] if len(terms) == 1 else {"$and": terms}


def after_filter(sort: SortSpec, values: Sequence[Any]) -> dict[str, Any]:
    """MongoDB filter for rows strictly after ``values`` in ``sort`` order (keyset ``$or`` expansion)."""
    if len(sort) != len(values):
        raise ValueError("sort and values differ in length")
    branches: list[dict[str, Any]] = []
    for index, (field, direction) in enumerate(sort):
        after = _strictly_after(field, direction, values[index])
        if after is None:
            continue
        prefix = [_equal(f, values[i]) for i, (f, _d) in enumerate(sort[:index])]
        terms = [*prefix, after]
        branches.append(terms[0] if len(terms) == 1 else {"$and": terms})
    if not branches:
        return {"_id": {"$in": []}}
    return branches[0] if len(branches) == 1 else {"$or": branches}
