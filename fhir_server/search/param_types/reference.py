"""Reference parameters: https://hl7.org/fhir/R4/search.html#reference.

Entry: ``{"r": "Type/id", "t": "Type", "i": "id"}`` (+ ``"v"`` version) for relative references,
``{"u": absolute-or-canonical URL, "t": Type if recognisable}`` otherwise (a canonical ``url|version`` also
yields ``{"u": url}``); ``Reference.identifier`` adds ``"is"``/``"ic"`` (its system and value). References to
contained resources (``#id``) are not indexed.

Query: ``Type/id`` on ``r`` (+ ``v`` for ``Type/id/_history/v``); ``id`` alone matches any type on ``i`` (or
``r`` when the ``:Type`` modifier or a single target type fixes the type); absolute and canonical URLs on
``u``; ``:identifier`` on ``is``/``ic``. Sorted by ``r``.

Chains, ``_has``, ``_include``/``_revinclude`` and compartments read the entries through :func:`path`,
:func:`target` and the field constants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.search.index_layout import SortKey, bounds_sort_key, param_path
from fhir_server.search.param_types.common import Criteria, Entry, Filter, compact
from fhir_server.search.param_types.token import TokenValue

REFERENCE = "r"  # "Type/id"
TYPE = "t"
ID = "i"
VERSION = "v"
URL = "u"
IDENTIFIER_SYSTEM = "is"
IDENTIFIER_VALUE = "ic"
MODIFIERS = frozenset({"missing", "identifier"})  # and any resource type (``:Patient``)
_RELATIVE_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass(frozen=True)
class ReferenceValue:
    """``Type/id``, ``id``, an absolute URL, or a canonical ``url|version``; for ``:identifier`` a token."""

    raw: str
    type: str | None = None
    id: str | None = None
    version: str | None = None
    url: str | None = None
    identifier: TokenValue | None = None


def path(code: str) -> str:
    """``sp.<code>.r``: the ``Type/id`` values of reference parameter ``code``."""
    return param_path(code, REFERENCE)


def target(entry: Mapping[str, Any]) -> tuple[str, str] | None:
    """(type, id) of an entry of a relative reference, None for URLs and identifiers."""
    kind, ident = entry.get(TYPE), entry.get(ID)
    return (kind, ident) if kind and ident else None


def string_entries(reference: str) -> list[Entry]:
    """Entries for a reference string: relative ``Type/id``, absolute URL or canonical ``url|version``."""
    relative = _RELATIVE_REF.match(reference)
    if relative:
        kind, ident, version = relative.groups()
        return [compact({REFERENCE: f"{kind}/{ident}", TYPE: kind, ID: ident, VERSION: version})]
    if reference.startswith("#"):
        return []  # contained resources are not indexed
    tail = _ABSOLUTE_TAIL.search(reference.split("|", 1)[0])
    kind = tail.group(1) if tail else None
    out = [compact({URL: reference, TYPE: kind})]
    if "|" in reference:
        out.append(compact({URL: reference.split("|", 1)[0], TYPE: kind}))
    return out


def entries(value: Any, restriction: str | None = None) -> list[Entry]:
    if isinstance(value, str):
        out = string_entries(value)
    elif isinstance(value, dict):
        out = _reference_entries(value)
    else:
        return []
    if restriction is not None:
        out = [e for e in out if e.get(TYPE) == restriction]
    return out


def _reference_entries(value: dict[str, Any]) -> list[Entry]:
    reference = value.get("reference")
    out = string_entries(reference) if isinstance(reference, str) else []
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        extra = compact({IDENTIFIER_SYSTEM: identifier.get("system"), IDENTIFIER_VALUE: identifier.get("value")})
        out = [{**e, **extra} for e in out] if out else [compact({**extra, TYPE: value.get("type")})]
    return out


def sort_key(values: list[Any]) -> SortKey | None:
    return bounds_sort_key(values, REFERENCE, REFERENCE)


def entry_condition(value: ReferenceValue, criteria: Criteria) -> Filter:
    if value.identifier is not None:
        token = value.identifier
        condition: Filter = {IDENTIFIER_VALUE: token.code}
        if token.system is not None:
            condition[IDENTIFIER_SYSTEM] = token.system or None
        return condition
    if value.url is not None:
        return {URL: value.url}
    modifier = criteria.modifier
    kind = value.type or (modifier if modifier and modifier[0].isupper() else None)
    if kind is None and len(criteria.targets) == 1:
        kind = criteria.targets[0]
    if kind is None:
        return {ID: value.id}
    condition = {REFERENCE: f"{kind}/{value.id}"}
    if value.version:
        condition[VERSION] = value.version
    return condition
