"""Token parameters: https://hl7.org/fhir/R4/search.html#token.

Entry: ``{"s": system, "c": code, "t": normalized display/text}`` (empty fields omitted). Identifier adds
``"ty": [{"s", "c"}]`` (its type codings, for ``:of-type``) and ``"t"`` its type text; CodeableConcept gives
one entry per coding plus ``{"t": text}``; boolean -> ``{"c": "true"}``; code -> ``{"c": code}``;
ContactPoint -> ``{"s": system, "c": value}``.

Query: ``code``, ``system|code``, ``|code`` (an entry without system), ``system|``; ``:text`` starts-with on
``t``; ``:of-type`` on ``ty`` and the identifier value; ``:in/:not-in/:below/:above`` on the code sets the
caller resolved (:func:`code_set_filter`); ``:not`` (resources with no matching entry, including those without
the element) is the compiler's ``$nor`` of the positive conditions. Sorted by ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir_server.search.index_layout import SortKey, bounds_sort_key
from fhir_server.search.param_types.common import MATCH_NOTHING, Criteria, Entry, Filter, any_of, compact, regex_literal
from fhir_server.search.values import normalize_text

SYSTEM = "s"
CODE = "c"
TEXT = "t"
TYPES = "ty"  # Identifier.type codings: [{"s", "c"}]
MODIFIERS = frozenset({"text", "not", "above", "below", "in", "not-in", "of-type", "missing"})
CODE_SET_MODIFIERS = frozenset({"in", "not-in", "below", "above"})
CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


@dataclass(frozen=True)
class TokenValue:
    """``[system]|[code]``, ``|[code]``, ``[system]|``, ``[code]``; ``system`` is None when no ``|`` was
    given, ``""`` for an explicit "no system" (``|code``).

    For ``:of-type``: ``type_system|type_code|value``."""

    raw: str
    code: str | None
    system: str | None = None
    type_system: str | None = None
    type_code: str | None = None


def _text(value: Any) -> str | None:
    return normalize_text(value) if isinstance(value, str) and value.strip() else None


def coding_entry(coding: dict[str, Any]) -> Entry:
    system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    try:
        return dict(_coding_entry(system, code, display))
    except TypeError:  # an unhashable (invalid) value: no cache
        return compact({SYSTEM: system, CODE: code, TEXT: _text(display)})


@lru_cache(maxsize=16384)
def _coding_entry(system: Any, code: Any, display: Any) -> Entry:
    return compact({SYSTEM: system, CODE: code, TEXT: _text(display)})


def entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, bool):
        return [{CODE: "true" if value else "false"}]
    if isinstance(value, str):
        return [{CODE: value}] if value else []
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        out = [coding_entry(c) for c in value.get("coding", ()) if isinstance(c, dict)]
        text = _text(value.get("text"))
        if text:
            out.append({TEXT: text})
        return [e for e in out if e]
    if "value" in value:
        return [_identifier_or_contact(value)]
    if "code" in value or "system" in value:
        return [coding_entry(value)]
    return []


def _identifier_or_contact(value: dict[str, Any]) -> Entry:
    system = value.get("system")
    if system in CONTACT_SYSTEMS:
        return compact({SYSTEM: system, CODE: value.get("value")})
    kind: dict[str, Any] = value["type"] if isinstance(value.get("type"), dict) else {}
    types = [compact({SYSTEM: c.get("system"), CODE: c.get("code")}) for c in kind.get("coding", ())]
    return compact({SYSTEM: system, CODE: value.get("value"), TYPES: types, TEXT: _text(kind.get("text"))})


def sort_key(values: list[Any]) -> SortKey | None:
    return bounds_sort_key(values, CODE, CODE)


def entry_condition(value: TokenValue, criteria: Criteria) -> Filter:
    if criteria.modifier == "text":
        return {TEXT: {"$regex": "^" + regex_literal(normalize_text(value.raw))}}
    if criteria.modifier == "of-type":
        return {CODE: value.code, TYPES: {"$elemMatch": {SYSTEM: value.type_system, CODE: value.type_code}}}
    condition: Filter = {}
    if value.system is not None:
        condition[SYSTEM] = value.system or None  # "" (|code) means: entry without system
    if value.code is not None:
        condition[CODE] = value.code
    return condition


def code_set_filter(field: str, pairs: set[tuple[str | None, str]], value_set: bool = False) -> Filter:
    """Entries of ``field`` whose (system, code) is one of ``pairs`` (a resolved ``:in/:below/:above``). For a
    value set (``:in``, ``:not-in``), also entries without a system whose code is one of them: an element of type
    ``code`` (``Patient.gender``) carries no system, the one of the value set bound to it is implied; ``:below``
    and ``:above`` name their system."""
    if not pairs:
        return dict(MATCH_NOTHING)
    by_system: dict[str | None, list[str]] = {}
    for system, code in sorted(pairs, key=lambda p: (p[0] or "", p[1])):
        by_system.setdefault(system, []).append(code)
    options: list[Filter] = [{SYSTEM: system, CODE: {"$in": codes}} for system, codes in by_system.items()]
    if value_set and None not in by_system:
        options.append({SYSTEM: {"$exists": False}, CODE: {"$in": sorted({code for _, code in pairs})}})
    return {field: {"$elemMatch": any_of(options)}}
