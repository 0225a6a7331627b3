"""Parsing the registry report's filters (``period-start``, ``period-end``, ``country``, ``center``,
``cohort``) from ``$registry-report`` parameters or ``/report`` query parameters.

Dates may be partial (``2007``, ``2007-03``, ``2007-03-15``): ``period-start`` is the first day of what it
names, ``period-end`` the last (inclusive), as FHIR date ranges are (https://hl7.org/fhir/R4/search.html#date).
The period applies to the registration date (data-contract.md v0.2, "Definitions"): the registration Observation's
``effectiveDateTime``, else the end of the last stopped imatinib period, else the day the Patient was first stored.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from datetime import date

from fhir_server.errors import InvalidRequest
from fhir_server.reports.model import Filters

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CENTER = re.compile(r"^[A-Z]{2}-[A-Z0-9]+$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

Getter = Callable[[str], list[str]]


def parse_date(name: str, value: str, *, end: bool) -> date:
    """A (partial) date: its first day, or its last day when ``end``."""
    match = _DATE.match(value.strip())
    if not match:
        raise InvalidRequest(f"{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD), not '{value}'",
                             code="value", expression=(name,))
    year, month, day = (int(g) if g else None for g in match.groups())
    assert year is not None
    try:
        if month is None:
            return date(year, 12, 31) if end else date(year, 1, 1)
        if day is None:
            return date(year, month, calendar.monthrange(year, month)[1] if end else 1)
        return date(year, month, day)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}", code="value", expression=(name,)) from exc


def _codes(name: str, values: Iterable[str], pattern: re.Pattern[str]) -> frozenset[str]:
    out = {part.strip().upper() for value in values for part in value.split(",") if part.strip()}
    bad = sorted(code for code in out if not pattern.match(code))
    if bad:
        raise InvalidRequest(f"{name}: not a valid code: {', '.join(bad)}", code="value", expression=(name,))
    return frozenset(out)


def parse_filters(get: Getter) -> Filters:
    """Filters from a parameter getter (``get(name)`` -> every value given for ``name``)."""
    start = get("period-start")
    end = get("period-end")
    period_start = parse_date("period-start", start[0], end=False) if start and start[0] else None
    period_end = parse_date("period-end", end[0], end=True) if end and end[0] else None
    if period_start and period_end and period_start > period_end:
        raise InvalidRequest("period-start is after period-end", code="value", expression=("period-start",))
    cohort = next((v.strip() for v in get("cohort") if v.strip()), None)
    if cohort is not None and not _ID.match(cohort):
        raise InvalidRequest(f"cohort must be a Group id, not '{cohort}'", code="value", expression=("cohort",))
    return Filters(period_start=period_start, period_end=period_end,
                   countries=_codes("country", get("country"), _COUNTRY),
                   centers=_codes("center", get("center"), _CENTER), cohort=cohort)


def params_getter(params: list[tuple[str, str]]) -> Getter:
    """A getter over query-string pairs."""
    return lambda name: [value for key, value in params if key == name]
