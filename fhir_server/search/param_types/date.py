"""Date parameters: https://hl7.org/fhir/R4/search.html#date and prefixes (#prefix).

Entry: ``{"lo": datetime, "hi": datetime}``, the UTC half-open implicit range of the value (see
:mod:`fhir_server.search.values`); a Period's open ends are MIN/MAX; a Timing gives its events and its bounds.

Query: search range ``[pl, ph)`` vs entry range ``[lo, hi)``: eq ``lo>=pl & hi<=ph``; ne: an entry that is
not eq; gt ``hi>ph``; lt ``lo<pl``; ge ``gt | eq``; le ``lt | eq``; sa ``lo>=ph``; eb ``hi<=pl``; ap: overlap
with the search range widened by 10% of its distance to now (at least 1 day); po (``_filter``'s overlap,
search_filter.html#ops, never a prefix of a plain search) ``lo<ph & hi>pl``. ``_lastUpdated`` compares a
stored instant (:func:`instant_filter`). Sorted by ``lo`` ascending, ``hi`` descending; a date condition also
bounds those sort keys (:func:`implied_sort_bound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir_server.search.index_layout import SORT_ASCENDING, SORT_DESCENDING, SortKey, bounds_sort_key, sort_path
from fhir_server.search.param_types.common import Criteria, Entry, Filter
from fhir_server.search.values import MAX_DATETIME, MIN_DATETIME, DateRange, parse_date_range

LOW = "lo"  # inclusive
HIGH = "hi"  # exclusive
MODIFIERS = frozenset({"missing"})
OVERLAPS = "po"  # the prefix of a DateValue from _filter's po


@dataclass(frozen=True)
class DateValue:
    raw: str
    prefix: str
    range: DateRange


def range_entry(value: DateRange) -> Entry:
    return {LOW: value.lo, HIGH: value.hi}


def _date_entry(text: Any) -> Entry | None:
    if not isinstance(text, str):
        return None
    try:
        return range_entry(parse_date_range(text))
    except ValueError:
        return None


def _period_entry(period: dict[str, Any]) -> Entry | None:
    start = _date_entry(period.get("start"))
    end = _date_entry(period.get("end"))
    if start is None and end is None:
        return None
    return {LOW: start[LOW] if start else MIN_DATETIME, HIGH: end[HIGH] if end else MAX_DATETIME}


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, str):
        entry = _date_entry(value)
        return [entry] if entry else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:
        period = _period_entry(value)
        return [period] if period else []
    out = [e for e in (_date_entry(t) for t in value.get("event", ())) if e]
    repeat: dict[str, Any] = value["repeat"] if isinstance(value.get("repeat"), dict) else {}
    bounds = repeat.get("boundsPeriod")
    if isinstance(bounds, dict):
        period = _period_entry(bounds)
        if period:
            out.append(period)
    return out


def sort_key(values: list[Any]) -> SortKey | None:
    return bounds_sort_key(values, LOW, HIGH)


def _approximate_margin(value: DateValue, now: datetime) -> timedelta:
    distance = abs(now - value.range.lo)
    return max(distance / 10, timedelta(days=1))


def entry_condition(value: DateValue, criteria: Criteria) -> Filter:
    pl, ph = value.range.lo, value.range.hi
    eq: Filter = {LOW: {"$gte": pl}, HIGH: {"$lte": ph}}
    match value.prefix:
        case "eq":
            return eq
        case "ne":
            return {"$or": [{LOW: {"$lt": pl}}, {HIGH: {"$gt": ph}}]}
        case "gt":
            return {HIGH: {"$gt": ph}}
        case "lt":
            return {LOW: {"$lt": pl}}
        case "ge":
            return {"$or": [{HIGH: {"$gt": ph}}, eq]}
        case "le":
            return {"$or": [{LOW: {"$lt": pl}}, eq]}
        case "sa":
            return {LOW: {"$gte": ph}}
        case "eb":
            return {HIGH: {"$lte": pl}}
        case "po":
            return {LOW: {"$lt": ph}, HIGH: {"$gt": pl}}
        case _:  # ap
            margin = _approximate_margin(value, criteria.now)
            return {LOW: {"$lt": ph + margin}, HIGH: {"$gt": pl - margin}}


def implied_sort_bound(code: str, value: DateValue, now: datetime) -> Filter:
    """A condition on the scalar sort keys implied by a date condition, added so that the compound indexes
    ``(code, _sort.<date>.a|d, ...)`` can bound their scan (it never changes the result).

    With ``a`` = the smallest ``lo`` and ``d`` = the largest ``hi`` of the resource's entries (every entry has
    ``lo < hi``), an entry ``e`` matching the value implies: eq ``d > pl`` and ``a < ph``; gt/sa ``d > ph``
    (``e.hi > ph``, resp. ``e.hi > e.lo >= ph``); ge ``d > pl``; lt/eb ``a < pl``; le ``a < ph``; ap the same
    as eq on the widened range; po as eq; ne nothing."""
    pl, ph = value.range.lo, value.range.hi
    low, high = sort_path(code, SORT_ASCENDING), sort_path(code, SORT_DESCENDING)
    match value.prefix:
        case "eq" | "po":
            return {high: {"$gt": pl}, low: {"$lt": ph}}
        case "gt" | "sa":
            return {high: {"$gt": ph}}
        case "ge":
            return {high: {"$gt": pl}}
        case "lt" | "eb":
            return {low: {"$lt": pl}}
        case "le":
            return {low: {"$lt": ph}}
        case "ap":
            margin = _approximate_margin(value, now)
            return {high: {"$gt": pl - margin}, low: {"$lt": ph + margin}}
        case _:
            return {}


def instant_filter(field: str, value: DateValue, now: datetime) -> Filter:
    """A stored instant ``t`` (millisecond precision, range ``[t, t+1ms)``) against a search range."""
    pl, ph = value.range.lo, value.range.hi
    match value.prefix:
        case "eq" | "po":
            return {field: {"$gte": pl, "$lt": ph}}
        case "ne":
            return {"$or": [{field: {"$lt": pl}}, {field: {"$gte": ph}}]}
        case "gt" | "sa":
            return {field: {"$gte": ph}}
        case "lt" | "eb":
            return {field: {"$lt": pl}}
        case "ge":
            return {field: {"$gte": pl}}
        case "le":
            return {field: {"$lt": ph}}
        case _:
            margin = _approximate_margin(value, now)
            return {field: {"$gte": pl - margin, "$lt": ph + margin}}
