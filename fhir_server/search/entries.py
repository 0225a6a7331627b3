"""Index entry builders, one per search parameter type (the shape of ``sp.<code>`` list items).

Spec: https://hl7.org/fhir/R4/search.html#ptypes and the element-type table at
https://hl7.org/fhir/R4/search.html#table. Entry shapes (keys omitted when empty):

==========  ================================================================================================
string      ``{"n": normalized text, "x": exact text}``; HumanName/Address expand to their parts
            (family, given, prefix, suffix, text / line, city, district, state, postalCode, country, text).
token       ``{"s": system, "c": code, "t": normalized display/text}``; Identifier adds
            ``"ty": [{"s","c"}]`` (its type codings, for ``:of-type``); CodeableConcept gives one entry per
            coding plus ``{"t": text}``; boolean -> ``{"c": "true"}``; code -> ``{"c": code}``;
            ContactPoint -> ``{"s": system, "c": value}``.
reference   ``{"r": "Type/id", "t": "Type", "i": "id"}`` (+ ``"v"`` version) for relative references,
            ``{"u": absolute-or-canonical URL, "t": Type if recognisable}`` otherwise (a canonical
            ``url|version`` also yields ``{"u": url}``); ``Reference.identifier`` adds ``"is"``/``"ic"``.
date        ``{"lo": datetime, "hi": datetime}``: UTC half-open range (see :mod:`.values`); Period open ends
            are MIN/MAX; Timing gives its events and its bounds.
number      ``{"lo", "hi", "vl", "vh"}`` as ``Decimal128``: ``lo/hi`` is the implicit precision range
            ``[v - ½ulp, v + ½ulp)``; ``vl = vh = v`` the exact value. A Range gives ``lo = vl = low``,
            ``hi = vh = high`` (open ends +/-Infinity).
quantity    number entry + ``"s"`` system, ``"c"`` code, ``"u"`` unit. No UCUM canonicalisation (not done:
            ``mg`` and ``g`` are not compared across units).
uri         the string itself (a canonical ``url|version`` also yields ``url``).
composite   ``{"k0": entry, "k1": entry, ...}`` built in :mod:`.extract`.
==========  ================================================================================================
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson.decimal128 import Decimal128

from fhir_server.search.values import (
    MAX_DATETIME,
    MIN_DATETIME,
    d128,
    normalize_text,
    parse_date_range,
    precision_bounds,
    to_decimal,
)

CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_RELATIVE_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
POS_INF = Decimal128("Infinity")
NEG_INF = Decimal128("-Infinity")

Entry = dict[str, Any]


def _compact(entry: Entry) -> Entry:
    return {k: v for k, v in entry.items() if v is not None and v != "" and v != []}


# -- string ----------------------------------------------------------------------------------------

def _string_entry(text: str) -> Entry:
    return {"n": normalize_text(text), "x": text}


def string_entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, str):
        return [_string_entry(value)] if value.strip() else []
    if isinstance(value, dict):
        parts = HUMAN_NAME_PARTS if _is_human_name(value) else ADDRESS_PARTS
        out: list[Entry] = []
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str) and text.strip():
                    out.append(_string_entry(text))
        return out
    return []


def _is_human_name(value: dict[str, Any]) -> bool:
    return any(k in value for k in ("family", "given", "prefix", "suffix"))


# -- token -----------------------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    return normalize_text(value) if isinstance(value, str) and value.strip() else None


def coding_entry(coding: dict[str, Any]) -> Entry:
    system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    try:
        return dict(_coding_entry(system, code, display))
    except TypeError:  # an unhashable (invalid) value: no cache
        return _compact({"s": system, "c": code, "t": _text(display)})


@lru_cache(maxsize=16384)
def _coding_entry(system: Any, code: Any, display: Any) -> Entry:
    return _compact({"s": system, "c": code, "t": _text(display)})


def token_entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, bool):
        return [{"c": "true" if value else "false"}]
    if isinstance(value, str):
        return [{"c": value}] if value else []
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        out = [coding_entry(c) for c in value.get("coding", ()) if isinstance(c, dict)]
        text = _text(value.get("text"))
        if text:
            out.append({"t": text})
        return [e for e in out if e]
    if "value" in value:
        return [_identifier_or_contact(value)]
    if "code" in value or "system" in value:
        return [coding_entry(value)]
    return []


def _identifier_or_contact(value: dict[str, Any]) -> Entry:
    system = value.get("system")
    if system in CONTACT_SYSTEMS:
        return _compact({"s": system, "c": value.get("value")})
    kind: dict[str, Any] = value["type"] if isinstance(value.get("type"), dict) else {}
    types = [_compact({"s": c.get("system"), "c": c.get("code")}) for c in kind.get("coding", ())]
    return _compact({"s": system, "c": value.get("value"), "ty": types, "t": _text(kind.get("text"))})


# -- reference -------------------------------------------------------------------------------------

def reference_string_entry(reference: str) -> list[Entry]:
    """Entries for a reference string: relative ``Type/id``, absolute URL or canonical ``url|version``."""
    relative = _RELATIVE_REF.match(reference)
    if relative:
        kind, ident, version = relative.groups()
        return [_compact({"r": f"{kind}/{ident}", "t": kind, "i": ident, "v": version})]
    if reference.startswith("#"):
        return []  # contained resources are not indexed
    tail = _ABSOLUTE_TAIL.search(reference.split("|", 1)[0])
    kind = tail.group(1) if tail else None
    out = [_compact({"u": reference, "t": kind})]
    if "|" in reference:
        out.append(_compact({"u": reference.split("|", 1)[0], "t": kind}))
    return out


def reference_entries(value: Any, restriction: str | None = None) -> list[Entry]:
    if isinstance(value, str):
        out = reference_string_entry(value)
    elif isinstance(value, dict):
        out = _reference_dict_entries(value)
    else:
        return []
    if restriction is not None:
        out = [e for e in out if e.get("t") == restriction]
    return out


def _reference_dict_entries(value: dict[str, Any]) -> list[Entry]:
    reference = value.get("reference")
    out = reference_string_entry(reference) if isinstance(reference, str) else []
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        extra = _compact({"is": identifier.get("system"), "ic": identifier.get("value")})
        out = [{**e, **extra} for e in out] if out else [_compact({**extra, "t": value.get("type")})]
    return out


# -- date ------------------------------------------------------------------------------------------

def _date_entry(text: Any) -> Entry | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_date_range(text).as_entry()
    except ValueError:
        return None


def _period_entry(period: dict[str, Any]) -> Entry | None:
    start = _date_entry(period.get("start"))
    end = _date_entry(period.get("end"))
    if start is None and end is None:
        return None
    return {"lo": start["lo"] if start else MIN_DATETIME, "hi": end["hi"] if end else MAX_DATETIME}


def date_entries(value: Any, _restriction: str | None = None) -> list[Entry]:
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


# -- number / quantity -----------------------------------------------------------------------------

def point_entry(value: Decimal) -> Entry:
    lo, hi, exact = _point_bounds(str(value))  # the text keeps the precision (1.50 is not 1.5)
    return {"lo": lo, "hi": hi, "vl": exact, "vh": exact}


@lru_cache(maxsize=16384)
def _point_bounds(text: str) -> tuple[Decimal128, Decimal128, Decimal128]:
    value = Decimal(text)
    lo, hi = precision_bounds(value)
    return d128(lo), d128(hi), d128(value)


def number_entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if isinstance(value, dict) and ("low" in value or "high" in value):
        return [_range_entry(value)]
    number = to_decimal(value)
    return [point_entry(number)] if number is not None else []


def _range_entry(value: dict[str, Any]) -> Entry:
    low = to_decimal((value.get("low") or {}).get("value"))
    high = to_decimal((value.get("high") or {}).get("value"))
    lo = d128(low) if low is not None else NEG_INF
    hi = d128(high) if high is not None else POS_INF
    unit_source = value.get("low") or value.get("high") or {}
    return {"lo": lo, "hi": hi, "vl": lo, "vh": hi, **_units(unit_source)}


def _units(quantity: dict[str, Any]) -> Entry:
    return _compact({"s": quantity.get("system"), "c": quantity.get("code"), "u": quantity.get("unit")})


def quantity_entries(value: Any, _restriction: str | None = None) -> list[Entry]:
    if not isinstance(value, dict):
        return number_entries(value)
    if "low" in value or "high" in value:
        return [_range_entry(value)]
    number = to_decimal(value.get("value"))
    if number is None:
        return []
    if "currency" in value:  # Money
        return [{**point_entry(number), "s": "urn:iso:std:iso:4217", "c": value["currency"]}]
    return [{**point_entry(number), **_units(value)}]


# -- uri -------------------------------------------------------------------------------------------

def uri_entries(value: Any, _restriction: str | None = None) -> list[str]:
    if not isinstance(value, str) or not value:
        return []
    if "|" in value:
        return [value, value.split("|", 1)[0]]
    return [value]


# -- sort keys -------------------------------------------------------------------------------------

_SORT_FIELDS: dict[str, tuple[str, str]] = {
    "string": ("n", "n"), "token": ("c", "c"), "reference": ("r", "r"),
    "date": ("lo", "hi"), "number": ("vl", "vh"), "quantity": ("vl", "vh"),
}


def sort_key(param_type: str, values: list[Any]) -> dict[str, Any] | None:
    """Scalar sort keys: ``a`` = smallest value (ascending), ``d`` = largest value (descending)."""
    if param_type == "uri":
        strings = [v for v in values if isinstance(v, str)]
        return {"a": min(strings), "d": max(strings)} if strings else None
    fields = _SORT_FIELDS.get(param_type)
    if fields is None:
        return None
    low = [e[fields[0]] for e in values if isinstance(e, dict) and e.get(fields[0]) is not None]
    high = [e[fields[1]] for e in values if isinstance(e, dict) and e.get(fields[1]) is not None]
    if not low or not high:
        return None
    return {"a": low[0] if len(low) == 1 else min(low, key=_order),
            "d": high[0] if len(high) == 1 else max(high, key=_order)}


def _order(value: Any) -> Any:
    return _decimal_of(value.bid) if isinstance(value, Decimal128) else value


@lru_cache(maxsize=16384)
def _decimal_of(bid: bytes) -> Decimal:
    return Decimal128.from_bid(bid).to_decimal()
