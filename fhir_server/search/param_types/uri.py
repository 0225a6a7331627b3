"""Uri parameters: https://hl7.org/fhir/R4/search.html#uri.

Entry: the string itself (no fields); a canonical ``url|version`` also yields ``url``.

Query: exact; ``:below`` (the value is a prefix of the entry); ``:above`` (the entry is a path prefix of the
value, :func:`uri_prefixes`). Sorted by the string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.search.index_layout import SortKey, scalar_sort_key
from fhir_server.search.param_types.common import Criteria, Filter, regex_literal

MODIFIERS = frozenset({"above", "below", "missing"})


@dataclass(frozen=True)
class UriValue:
    raw: str
    uri: str


def entries(value: Any, _restriction: str | None = None) -> list[str]:
    if not isinstance(value, str) or not value:
        return []
    if "|" in value:
        return [value, value.split("|", 1)[0]]
    return [value]


def sort_key(values: list[Any]) -> SortKey | None:
    return scalar_sort_key(values)


def value_filter(field: str, value: UriValue, criteria: Criteria) -> Filter:
    """The filter on ``sp.<code>`` (a list of strings, compared directly)."""
    if criteria.modifier == "below":
        return {field: {"$regex": "^" + regex_literal(value.uri)}}
    if criteria.modifier == "above":
        return {field: {"$in": uri_prefixes(value.uri)}}
    return {field: value.uri}


def entry_condition(value: UriValue, _criteria: Criteria | None = None) -> Filter:
    """The condition on one entry (a composite's component)."""
    return {"$eq": value.uri}


def uri_prefixes(uri: str) -> list[str]:
    """``http://a/b/c`` -> ``[http://a, http://a/b, http://a/b/c]`` (for ``:above``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return [uri]
    segments = rest.split("/")
    return [f"{scheme}://{'/'.join(segments[:n])}" for n in range(1, len(segments) + 1)]
