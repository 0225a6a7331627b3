"""Version stamps and ETags (https://hl7.org/fhir/R4/http.html#versioning)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.storage.documents import instant

_ETAG = re.compile(r'^\s*(?:W/)?(?:"([0-9]+)"|([0-9]+))\s*$')  # quoted or not, but never half-quoted


def parse_etag(value: str) -> int:
    """``W/"3"`` (or ``"3"``, or ``3``) -> 3."""
    match = _ETAG.match(value)
    if not match:
        raise InvalidRequest(f"Invalid ETag '{value}': expected W/\"<versionId>\"", code="invalid")
    return int(match.group(1) or match.group(2))


def etag_matches(header: str, vid: int) -> bool:
    """``If-None-Match`` (one or several ETags, or ``*``) names version ``vid``; an ETag that is not one of
    this server's (``W/"<versionId>"``) names no version (RFC 9110 13.1.2: the request proceeds)."""
    return any(tag.strip() == "*" or _version_of(tag) == vid for tag in header.split(","))


def _version_of(tag: str) -> int | None:
    try:
        return parse_etag(tag)
    except InvalidRequest:
        return None


def stamp(resource: dict[str, Any], resource_id: str, vid: int, last_updated: datetime) -> dict[str, Any]:
    """The resource as stored: server id and meta.versionId/lastUpdated, everything else as sent."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(vid)
    meta["lastUpdated"] = instant(last_updated)
    stamped: dict[str, Any] = {"resourceType": resource["resourceType"], "id": resource_id, "meta": meta}
    for key, value in resource.items():
        if key not in stamped:
            stamped[key] = value
    return stamped


def content_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal apart from the server-maintained meta.versionId and meta.lastUpdated."""
    if a is None or b is None:
        return a is b
    return _without_version(a) == _without_version(b)


def _without_version(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out
