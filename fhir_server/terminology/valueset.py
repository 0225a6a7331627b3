"""ValueSet expansion from ``compose`` (https://hl7.org/fhir/R4/valueset.html#compositions).

Supported: ``include``/``exclude`` of whole systems, of concept lists, of other value sets, and filters
``is-a``, ``descendent-of``, ``is-not-a``, ``generalizes``, ``=``, ``in``, ``not-in``, ``regex``, ``exists``
(https://hl7.org/fhir/R4/valueset-filter-operator.html) over systems whose CodeSystem is known. A system
the server does not hold (SNOMED CT, LOINC, ATC...) can still be included by concept list; including it whole
or by filter makes the value set non-enumerable: membership of its codes is then open (see ``Membership``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.json_types import Json
from fhir_server.terminology.codesystem import CodeSystemIndex, Concept

CodeSystemResolver = Callable[[str, str | None], CodeSystemIndex | None]
ValueSetResolver = Callable[[str], Json | None]


class ExpansionError(Exception):
    """The value set cannot be expanded (unknown value set, non-enumerable system, too many codes)."""

    def __init__(self, message: str, code: str = "not-supported") -> None:
        super().__init__(message)
        self.code = code  # OperationOutcome issue type


@dataclass(frozen=True)
class Entry:
    """One code of an expansion."""

    system: str
    code: str
    display: str | None = None
    version: str | None = None
    abstract: bool = False
    inactive: bool = False

    def to_contains(self) -> Json:
        out: Json = {"system": self.system}
        if self.version:
            out["version"] = self.version
        if self.abstract:
            out["abstract"] = True
        if self.inactive:
            out["inactive"] = True
        out["code"] = self.code
        if self.display:
            out["display"] = self.display
        return out


@dataclass
class Membership:
    """What a value set contains: enumerated codes plus systems open as a whole (not enumerable here)."""

    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    open_systems: set[str] = field(default_factory=set)

    def contains(self, system: str, code: str) -> bool | None:
        """True/False when known; None when the system is included whole but its content is not held."""
        if (system, code) in self.entries:
            return True
        return None if system in self.open_systems else False

    def codes(self) -> frozenset[tuple[str, str]]:
        return frozenset(self.entries)


def compose_membership(vs: Json, code_systems: CodeSystemResolver, value_sets: ValueSetResolver,
                       _seen: frozenset[str] = frozenset()) -> Membership:
    """Evaluate ``vs.compose`` (or take ``vs.expansion`` when there is no compose)."""
    url = vs.get("url", "")
    if url in _seen:
        raise ExpansionError(f"value set {url} includes itself", "processing")
    seen = _seen | {url}
    if "compose" not in vs:
        return _from_expansion(vs)
    out = Membership()
    for inc in vs["compose"].get("include", []):
        part = _include(inc, code_systems, value_sets, seen)
        out.entries.update(part.entries)
        out.open_systems |= part.open_systems
    for exc in vs["compose"].get("exclude", []):
        part = _include(exc, code_systems, value_sets, seen)
        for key in part.entries:
            out.entries.pop(key, None)
    return out


def _from_expansion(vs: Json) -> Membership:
    out = Membership()

    def walk(items: list[Json]) -> None:
        for c in items:
            if "code" in c:
                out.entries[(c["system"], c["code"])] = Entry(c["system"], c["code"], c.get("display"),
                                                              c.get("version"), c.get("abstract", False))
            walk(c.get("contains", []))

    walk(vs.get("expansion", {}).get("contains", []))
    return out


def _include(inc: Json, code_systems: CodeSystemResolver, value_sets: ValueSetResolver,
             seen: frozenset[str]) -> Membership:
    """One include/exclude: (system part) intersected with every referenced value set."""
    parts: list[Membership] = []
    if "system" in inc:
        parts.append(_system_part(inc, code_systems))
    for ref in inc.get("valueSet", []):
        target = value_sets(ref)
        if target is None:
            raise ExpansionError(f"unknown value set {ref}", "not-found")
        parts.append(compose_membership(target, code_systems, value_sets, seen))
    if not parts:
        return Membership()
    result = parts[0]
    for other in parts[1:]:
        result = _intersect(result, other)
    return result


def _intersect(a: Membership, b: Membership) -> Membership:
    out = Membership(open_systems=a.open_systems & b.open_systems)
    for key, entry in a.entries.items():
        if key in b.entries or key[0] in b.open_systems:
            out.entries[key] = entry
    for key, entry in b.entries.items():
        if key[0] in a.open_systems:
            out.entries.setdefault(key, entry)
    return out


def _system_part(inc: Json, code_systems: CodeSystemResolver) -> Membership:
    system: str = inc["system"]
    cs = code_systems(system, inc.get("version"))
    out = Membership()
    if "concept" in inc:
        for c in inc["concept"]:
            concept = cs.get(c["code"]) if cs is not None else None
            display = c.get("display") or (concept.display if concept else None)
            out.entries[(system, c["code"])] = _entry(system, c["code"], display, cs, concept)
        return out
    if cs is None or not cs.complete:
        out.open_systems.add(system)
        return out
    codes = {c.code for c in cs}
    for flt in inc.get("filter", []):
        codes &= _apply_filter(cs, flt)
    for code in sorted(codes):
        concept = cs.concepts[code]
        out.entries[(system, code)] = _entry(system, code, concept.display, cs, concept)
    return out


def _entry(system: str, code: str, display: str | None, cs: CodeSystemIndex | None,
           concept: Concept | None) -> Entry:
    return Entry(system, code, display, cs.version if cs else None,
                 concept.abstract if concept else False, concept.inactive if concept else False)


def _apply_filter(cs: CodeSystemIndex, flt: Json) -> set[str]:
    prop, op, value = flt.get("property"), flt.get("op"), str(flt.get("value", ""))
    every = set(cs.concepts)
    hierarchy = {
        "is-a": lambda: {value, *cs.descendants(value)} if value in cs else set(),
        "descendent-of": lambda: set(cs.descendants(value)),
        "is-not-a": lambda: every - {value, *cs.descendants(value)},
        "generalizes": lambda: {value, *cs.ancestors(value)} if value in cs else set(),
    }
    if op in hierarchy and prop == "concept":
        return hierarchy[op]()
    if op == "regex":
        pattern = re.compile(value)
        return {c.code for c in cs if _matches(c, prop, lambda v: pattern.fullmatch(str(v)) is not None)}
    values = set(value.split(","))
    if op == "=":
        return {c.code for c in cs if _matches(c, prop, lambda v: str(v).lower() == value.lower())}
    if op == "in":
        return {c.code for c in cs if _matches(c, prop, lambda v: str(v) in values)}
    if op == "not-in":
        return {c.code for c in cs if not _matches(c, prop, lambda v: str(v) in values)}
    if op == "exists":
        wanted = value == "true"
        return {c.code for c in cs if (prop in c.properties) == wanted}
    raise ExpansionError(f"filter {prop} {op} {value} is not supported")


def _matches(concept: Concept, prop: str | None, test: Callable[[Any], bool]) -> bool:
    if prop in ("concept", "code"):
        return test(concept.code)
    if prop == "display":
        return concept.display is not None and test(concept.display)
    return any(test(v) for v in concept.properties.get(prop or "", []))


def text_match(entries: Iterable[Entry], text: str | None) -> list[Entry]:
    """``filter`` parameter of $expand: case-insensitive substring of code or display."""
    if not text:
        return list(entries)
    needle = text.lower()
    return [e for e in entries if needle in e.code.lower() or (e.display and needle in e.display.lower())]
