"""Parsing of instant-valued request parameters (``_since``) and HTTP dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from fhir_server.errors import InvalidRequest

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def parse_instant_param(name: str, value: str) -> datetime:
    """An instant (time zone required), or a date taken as its first moment in UTC."""
    try:
        if _INSTANT.match(value):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        if _DATE.match(value):
            parts = [int(p) for p in value.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
    except ValueError:
        pass
    raise InvalidRequest(f"Invalid {name} '{value}': expected an instant such as 2026-01-31T12:00:00Z",
                         code="invalid", expression=(name,))


def parse_http_date(value: str) -> datetime | None:
    """RFC 7231 date of If-Modified-Since; None when unparseable (the header is then ignored)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
