"""The layout of ``sp``, the search index sub-document stored with each resource (no I/O, no imports of
the rest of the engine: every search module may use it).

``sp`` holds one key per parameter code that has values; each value is a list of *entries* whose shape is
owned by the parameter type's module (:mod:`fhir_server.search.param_types`). ``sp._sort`` holds scalar sort
keys per parameter, ``{"a": <ascending key>, "d": <descending key>}``, so that sorts and keyset paging never
compare against a multikey array (https://hl7.org/fhir/R4/search.html#_sort).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson.decimal128 import Decimal128

INDEX_FIELD = "sp"
SORT_FIELD = "_sort"
SORT_ASCENDING = "a"  # the smallest value of the parameter in the resource
SORT_DESCENDING = "d"  # the largest value

SortKey = dict[str, Any]
SortKeyBuilder = Callable[[list[Any]], SortKey | None]


def param_path(code: str, field: str | None = None) -> str:
    """``sp.<code>`` (the entries of parameter ``code``), or ``sp.<code>.<field>`` (one field of them)."""
    return f"{INDEX_FIELD}.{code}" if field is None else f"{INDEX_FIELD}.{code}.{field}"


def sort_path(code: str, key: str) -> str:
    """``sp._sort.<code>.<key>`` with ``key`` :data:`SORT_ASCENDING` or :data:`SORT_DESCENDING`."""
    return f"{INDEX_FIELD}.{SORT_FIELD}.{code}.{key}"


def bounds_sort_key(entries: Sequence[Any], low: str, high: str) -> SortKey | None:
    """Sort keys of entries with a low and a high field (the same field for single-valued entries):
    ascending = the smallest ``low``, descending = the largest ``high``; None when an entry set has neither."""
    lows = [e[low] for e in entries if isinstance(e, dict) and e.get(low) is not None]
    highs = [e[high] for e in entries if isinstance(e, dict) and e.get(high) is not None]
    if not lows or not highs:
        return None
    return {SORT_ASCENDING: lows[0] if len(lows) == 1 else min(lows, key=_order),
            SORT_DESCENDING: highs[0] if len(highs) == 1 else max(highs, key=_order)}


def scalar_sort_key(values: Sequence[Any]) -> SortKey | None:
    """Sort keys of entries that are plain strings (uri)."""
    strings = [v for v in values if isinstance(v, str)]
    return {SORT_ASCENDING: min(strings), SORT_DESCENDING: max(strings)} if strings else None


def _order(value: Any) -> Any:
    return _decimal_of(value.bid) if isinstance(value, Decimal128) else value


@lru_cache(maxsize=16384)
def _decimal_of(bid: bytes) -> Decimal:
    return Decimal128.from_bid(bid).to_decimal()
