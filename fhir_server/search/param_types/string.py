"""String parameters: https://hl7.org/fhir/R4/search.html#string.

Entry: ``{"n": normalized text, "x": exact text}`` (``normalize_text``: case- and accent-insensitive).
HumanName and Address expand to one entry per part (family, given, prefix, suffix, text / line, city,
district, state, postalCode, country, text).

Query: case/accent-insensitive starts-with (anchored regex on ``n``); ``:contains`` anywhere in ``n``;
``:exact`` equality on ``x``. Two matches only ``_filter`` asks for (search_filter.html#ops), named by the value's
``match``: ``eq`` the same text, and ``ew`` ends with, both case/accent-insensitive on ``n``. Sorted by ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.search.index_layout import SortKey, bounds_sort_key
from fhir_server.search.param_types.common import Criteria, Entry, Filter, regex_literal
from fhir_server.search.values import normalize_text

EQUAL = "equal"  # StringValue.match of _filter's eq
ENDS_WITH = "ends-with"  # and of its ew
NORMALIZED = "n"
EXACT = "x"
MODIFIERS = frozenset({"exact", "contains", "missing"})
HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


@dataclass(frozen=True)
class StringValue:
    raw: str
    text: str
    match: str | None = None  # EQUAL or ENDS_WITH (from _filter); None: as the modifier says


def _entry(text: str) -> Entry:
    return {NORMALIZED: normalize_text(text), EXACT: text}


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, str):
        return [_entry(value)] if value.strip() else []
    if isinstance(value, dict):
        parts = HUMAN_NAME_PARTS if _is_human_name(value) else ADDRESS_PARTS
        out: list[Entry] = []
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str) and text.strip():
                    out.append(_entry(text))
        return out
    return []


def _is_human_name(value: dict[str, Any]) -> bool:
    return any(k in value for k in ("family", "given", "prefix", "suffix"))


def sort_key(values: list[Any]) -> SortKey | None:
    return bounds_sort_key(values, NORMALIZED, NORMALIZED)


def entry_condition(value: StringValue, criteria: Criteria) -> Filter:
    if criteria.modifier == "exact":
        return {EXACT: value.text}
    if value.match == EQUAL:
        return {NORMALIZED: normalize_text(value.text)}
    pattern = regex_literal(normalize_text(value.text))
    if value.match == ENDS_WITH:
        return {NORMALIZED: {"$regex": pattern + r"\z"}}  # PCRE: the very end
    return {NORMALIZED: {"$regex": pattern if criteria.modifier == "contains" else "^" + pattern}}
