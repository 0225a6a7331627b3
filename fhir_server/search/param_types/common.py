"""What the parameter-type modules share: entry and filter types, and the criteria a value compiles with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Entry = dict[str, Any]
Filter = dict[str, Any]
MATCH_NOTHING: Filter = {"_id": {"$in": []}}


@dataclass(frozen=True)
class Criteria:
    """What an entry condition depends on besides the search value: the clause's modifier, the target types
    of its (reference) parameter, and the instant ``ap`` dates are approximated from."""

    modifier: str | None
    targets: tuple[str, ...]
    now: datetime


def compact(entry: Entry) -> Entry:
    """``entry`` without empty fields (None, "" and [] are never stored)."""
    return {k: v for k, v in entry.items() if v is not None and v != "" and v != []}


def any_of(terms: Sequence[Filter]) -> Filter:
    return terms[0] if len(terms) == 1 else {"$or": list(terms)}


def prefixed(condition: Filter, prefix: str) -> Filter:
    """An entry condition on the sub-document ``prefix`` of the entry: its field names under ``prefix``."""
    out: Filter = {}
    for key, value in condition.items():
        if key in ("$or", "$and", "$nor"):
            out[key] = [prefixed(v, prefix) for v in value]
        else:
            out[f"{prefix}.{key}"] = value
    return out


def elem_match(field: str, condition: Filter) -> Filter:
    """``{field.key: v}`` for one plain key, ``$elemMatch`` otherwise (all conditions on the same entry)."""
    if len(condition) == 1:
        key, value = next(iter(condition.items()))
        if not key.startswith("$"):
            return {f"{field}.{key}": value}
    return {field: {"$elemMatch": condition}}


def regex_literal(text: str) -> str:
    """A ``$regex`` pattern matching ``text`` literally: ``re.escape``, with NUL written as ``\\x00`` (MongoDB
    refuses a pattern holding a NUL byte, a 500 before; PCRE reads the escape as the same character)."""
    return re.escape(text).replace("\x00", "\\x00")
