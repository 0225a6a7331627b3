"""Hypothesis strategies for FHIR R4 resources, driven by the StructureDefinition data the server ships.

``fhir_server/validation/data/r4-elements.json`` (built from the R4 StructureDefinitions by
``scripts/build_snapshots.py``) lists, per type and backbone element, every element as
``[type, is_list, min, required binding value set, choice group]``, plus the regex of every primitive type and
the codes of the required value sets. ``resources(type)`` draws a *valid* resource of that type from it;
``mutations(resource)`` breaks one element of a valid resource and says which element it broke (a FHIRPath-like
path such as ``Patient.name[0].given[1]``), so that the test can require the server's OperationOutcome to name it.

What the generator leaves out, and why: ``meta`` and ``implicitRules`` (server-owned or profile claims, judged by
other tests), ``contained`` and ``modifierExtension`` (their rules are not structural), and references to
resources (every ``Reference.reference`` is an absolute URL of another server, so no transaction rewrites it).
Extensions and narratives get their own small strategies (``ext-1``; an xhtml ``<div>``).
"""

from __future__ import annotations

import base64
import copy
import json
import string
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import fhir_server.validation
from fhir_server.resources import REGISTRY_TYPES
from fhir_server.validation.core_invariants import core_invariant_issues

ELEMENTS = json.loads((Path(fhir_server.validation.__file__).parent / "data" / "r4-elements.json").read_text())
TYPES: dict[str, dict[str, list[Any]]] = ELEMENTS["types"]
PRIMITIVES: frozenset[str] = frozenset(ELEMENTS["primitives"])
VALUE_SETS: dict[str, dict[str, list[str]]] = ELEMENTS["valuesets"]
FUZZED_TYPES = REGISTRY_TYPES  # the registry's clinical types (DomainResources: extensions everywhere)

# Elements the generator never writes (see the module docstring).
SKIPPED = frozenset({"meta", "implicitRules", "contained", "modifierExtension"})
MAX_DEPTH = 4  # below it, complex values get their required elements only


@dataclass(frozen=True)
class Element:
    name: str
    type: str
    is_list: bool
    min: int
    binding: str | None
    choice: str | None

    @property
    def is_primitive(self) -> bool:
        return self.type in PRIMITIVES


def elements(type_key: str) -> list[Element]:
    return [Element(name, *row) for name, row in TYPES[type_key].items()]


# -- primitives ----------------------------------------------------------------------------------------------

# Valid FHIR string characters (datatypes.html#string): no code points below 32 except tab, CR and LF, and no
# lone surrogates; everything else goes, on purpose the odd ones: right-to-left marks and overrides, a byte order
# mark, zero-width joiners, combining marks, characters outside the BMP, noncharacters.
ODD_CHARACTERS = "\u202e\u200f\u061c\ufeff\u200d\u0301\U0001f600\U00010348\uffff\u2028\u00a0 \t\r\n"
_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, range(32))))
_TOKEN = st.text(string.ascii_letters + string.digits + "-._", min_size=1, max_size=12)


def _string_text() -> st.SearchStrategy[str]:
    odd = st.sampled_from(ODD_CHARACTERS)
    return st.text(st.one_of(_TEXT, odd), min_size=1, max_size=24).filter(_has_non_space)


def _has_non_space(text: str) -> bool:
    # the string regex [ \r\n\t\S]+ takes whitespace-only strings, but a one-character "\t" must not be the whole
    # value: keep at least one visible character so that every value means something
    return any(not c.isspace() for c in text)


@st.composite
def _date(draw: st.DrawFn, precision: str = "day") -> str:
    year = draw(st.integers(1000, 2999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    kind = draw(st.sampled_from(["year", "month", "day"])) if precision == "any" else precision
    return {"year": f"{year}", "month": f"{year}-{month:02d}", "day": f"{year}-{month:02d}-{day:02d}"}[kind]


@st.composite
def _time(draw: st.DrawFn) -> str:
    fraction = draw(st.sampled_from(["", ".5", ".123", ".000001"]))
    return f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}{fraction}"


_ZONES = st.sampled_from(["Z", "+00:00", "-05:00", "+14:00", "+05:30", "-12:00"])


@st.composite
def _date_time(draw: st.DrawFn, instant: bool = False) -> str:
    if not instant and draw(st.booleans()):
        return draw(_date("any"))
    return f"{draw(_date())}T{draw(_time())}{draw(_ZONES)}"


def decimals() -> st.SearchStrategy[Decimal | int]:
    """Decimals as the server can keep them exactly (BSON Decimal128: 34 significant digits), written in the
    form ``str(Decimal)`` gives, which is the form the server serves (``1.50``, ``1E-22``): long fractions,
    trailing zeros, huge and tiny exponents, integers past 64 bits."""
    plain = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: len(d.as_tuple().digits) <= 34 and -6100 < d.as_tuple().exponent < 6100)  # type: ignore[operator]
    chosen = st.sampled_from([Decimal("1.000000000000000000001"), Decimal("1.50"), Decimal("-0.0"),
                              Decimal("1E-22"), Decimal("1.000000000000000000E-245"), Decimal("9" * 34),
                              Decimal("123456789012345678901234567890.1234"), Decimal("1E+6000")])
    # JSON integers past 64 bits: the client writes them as they are, parsed they can only be a Decimal
    huge = st.integers(-(10**30), 10**30).map(lambda i: Decimal(i) if abs(i) >= 2**63 else i)
    return st.one_of(plain, chosen, huge)


def _base64() -> st.SearchStrategy[str]:
    return st.binary(min_size=1, max_size=30).map(lambda b: base64.b64encode(b).decode())


_URL = st.builds(lambda host, path: f"http://{host}.example.org/{path}", _TOKEN.map(str.lower), _TOKEN)
_CODE = st.lists(_TOKEN, min_size=1, max_size=2).map(" ".join)

PRIMITIVE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "integer": st.integers(-2147483648, 2147483647),
    "positiveInt": st.integers(1, 2147483647),
    "unsignedInt": st.integers(0, 2147483647),
    "decimal": decimals(),
    "string": _string_text(),
    "markdown": _string_text(),
    "code": _CODE,
    "id": st.text(string.ascii_letters + string.digits + "-.", min_size=1, max_size=64),
    "uri": _URL, "url": _URL, "canonical": _URL,
    "oid": st.lists(st.integers(0, 99999), min_size=1, max_size=5).map(
        lambda parts: "urn:oid:1." + ".".join(map(str, parts))),
    "uuid": st.uuids().map(lambda u: f"urn:uuid:{u}"),
    "base64Binary": _base64(),
    "date": _date("any"),
    "dateTime": _date_time(),
    "instant": _date_time(instant=True),
    "time": _time(),
}


def codes_of(value_set: str) -> list[tuple[str, str]]:
    return sorted((system, code) for system, codes in VALUE_SETS[value_set].items() for code in codes)


# -- complex values ------------------------------------------------------------------------------------------


@st.composite
def extension(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    """ext-1: an extension has a value[x] or nested extensions, not both."""
    out: dict[str, Any] = {"url": f"http://example.org/fhir/StructureDefinition/{draw(_TOKEN)}"}
    if depth < MAX_DEPTH and draw(st.integers(0, 4)) == 0:
        out["extension"] = draw(st.lists(extension(depth + 1), min_size=1, max_size=2))
    else:
        kind = draw(st.sampled_from(["string", "boolean", "decimal", "integer", "dateTime", "code"]))
        out[f"value{kind[0].upper()}{kind[1:]}"] = draw(PRIMITIVE_STRATEGIES[kind])
    return out


def nested_extension(levels: int) -> dict[str, Any]:
    """An extension holding an extension, ``levels`` deep (two JSON levels each): deep but valid."""
    node: dict[str, Any] = {"url": "http://example.org/fhir/StructureDefinition/leaf", "valueString": "deep"}
    for level in range(levels - 1):
        node = {"url": f"http://example.org/fhir/StructureDefinition/level-{level}", "extension": [node]}
    return node


@st.composite
def narrative(draw: st.DrawFn) -> dict[str, Any]:
    # txt-2: "some non-whitespace content"
    words = draw(st.text(string.ascii_letters + " ", min_size=1, max_size=20).filter(str.strip))
    return {"status": draw(st.sampled_from(["generated", "extensions", "additional", "empty"])),
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{words}</p></div>'}


@st.composite
def reference(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["Patient", "Organization", "Observation", "Group"]))
        out["reference"] = f"http://other.example.org/fhir/{kind}/{draw(PRIMITIVE_STRATEGIES['id'])}"
    if draw(st.booleans()) or not out:
        out["display"] = draw(_string_text())
    if depth < MAX_DEPTH and draw(st.integers(0, 3)) == 0:
        out["identifier"] = draw(complex_value("Identifier", depth + 1))
    return out


@st.composite
def bound_coding(draw: st.DrawFn, value_set: str) -> dict[str, Any]:
    system, code = draw(st.sampled_from(codes_of(value_set)))
    return {"system": system, "code": code}


def element_value(element: Element, depth: int) -> st.SearchStrategy[Any]:
    """One value (not the list) of ``element``."""
    if element.type == "code" and element.binding:
        return st.sampled_from(sorted({code for _, code in codes_of(element.binding)}))
    if element.type == "Coding" and element.binding:
        return bound_coding(element.binding)
    if element.type == "CodeableConcept" and element.binding:
        return st.builds(lambda coding: {"coding": [coding]}, bound_coding(element.binding))
    if element.is_primitive:
        return PRIMITIVE_STRATEGIES[element.type]
    return complex_value(element.type, depth + 1)


def complex_value(type_key: str, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    if type_key == "Extension":
        return extension(depth)
    if type_key == "Narrative":
        return narrative()
    if type_key == "Reference":
        return reference(depth)
    return _object(type_key, depth)


@st.composite
def _object(draw: st.DrawFn, type_key: str, depth: int) -> dict[str, Any]:
    """A JSON object of ``type_key``: its required elements, and some optional ones while not too deep."""
    rows = [e for e in elements(type_key) if e.name not in SKIPPED and e.type != "xhtml"]
    if depth > 0:
        rows = [e for e in rows if e.name != "id"]  # element ids: strings, nothing new to learn, noisy
    chosen = [e for e in rows if e.min > 0 and e.choice is None]
    choices: dict[str, list[Element]] = {}
    for e in rows:
        if e.choice:
            choices.setdefault(e.choice, []).append(e)
    for group in choices.values():
        if any(e.min > 0 for e in group):
            chosen.append(draw(st.sampled_from(group)))
    optional = [e for e in rows if e.min == 0 and e.choice is None and e.name != "id"]
    optional += [group[0] for group in choices.values() if not any(e.min > 0 for e in group)]
    if depth < MAX_DEPTH and optional:
        for e in draw(st.lists(st.sampled_from(optional), max_size=4 if depth == 0 else 2, unique=True)):
            if e.choice:
                e = draw(st.sampled_from(choices[e.choice]))
            chosen.append(e)
    out: dict[str, Any] = {}
    for e in chosen:
        value = element_value(e, depth)
        out[e.name] = draw(st.lists(value, min_size=1, max_size=2) if e.is_list else value)
    if not out:  # JSON objects must not be empty: one optional primitive (a type of choice elements only: one)
        fallback = sorted((e for e in rows if e.name not in ("id", "extension")),
                          key=lambda e: (e.choice is not None, not e.is_primitive))[0]
        value = draw(element_value(fallback, depth))
        out[fallback.name] = [value] if fallback.is_list else value
    return out


@st.composite
def _structured(draw: st.DrawFn, resource_type: str | None = None) -> dict[str, Any]:
    """A resource of ``resource_type`` (drawn from the supported clinical types when None) whose every element
    is valid by the R4 element table."""
    kind = resource_type or draw(st.sampled_from(FUZZED_TYPES))
    body = draw(_object(kind, 0))
    body.pop("id", None)
    if draw(st.integers(0, 9)) == 0:
        body.setdefault("extension", []).append(nested_extension(draw(st.integers(2, 40))))
    return {"resourceType": kind, **body}


def resources(resource_type: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A valid resource: well-structured, and breaking none of R4's own invariants (conformance-rules.html; about
    one drawn resource in five breaks one, mostly org-1 "a name or an identifier" and pat-1 "a contact's
    details", and is drawn again)."""
    return _structured(resource_type).filter(_keeps_r4_invariants)


def _keeps_r4_invariants(resource: dict[str, Any]) -> bool:
    return not any(i.severity == "error" for i in core_invariant_issues(resource))


# -- mutations -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a value sits in a resource: its container, its key or index there, and what it is."""

    container: dict[str, Any] | list[Any]
    key: str | int
    element: Element
    path: str  # Patient.name[0].given[1]
    owner: dict[str, Any]  # the JSON object holding the element
    owner_type: str
    owner_path: str


def locations(resource: dict[str, Any]) -> list[Location]:
    """Every element value of ``resource`` the generator wrote, with its path (list items one by one)."""
    out: list[Location] = []
    _collect(resource, resource["resourceType"], resource["resourceType"], out)
    return out


def _collect(obj: dict[str, Any], type_key: str, path: str, out: list[Location]) -> None:
    rows = TYPES.get(type_key, {})
    for name, value in obj.items():
        if name not in rows:
            continue
        element = Element(name, *rows[name])
        items = list(enumerate(value)) if element.is_list and isinstance(value, list) else [(None, value)]
        for index, item in items:
            at = f"{path}.{name}" if index is None else f"{path}.{name}[{index}]"
            container: Any = obj if index is None else value
            out.append(Location(container, name if index is None else index, element, at, obj, type_key, path))
            if isinstance(item, dict) and not element.is_primitive:
                _collect(item, element.type, at, out)


@dataclass(frozen=True)
class Mutation:
    """An invalid resource and the element the server must name in its OperationOutcome."""

    kind: str
    resource: dict[str, Any]
    path: str
    raw: tuple[bytes, bytes] | None = None  # replace this JSON text by that one in the body (what json can't say)

    def in_bundle(self, index: int) -> str:
        """The broken element's path when the resource is entry ``index`` of a Bundle."""
        kind = self.resource["resourceType"]
        return f"Bundle.entry[{index}].resource{self.path[len(kind):]}"

    def body(self, dumps: Any) -> bytes:
        text: bytes = dumps(self.resource)
        return text.replace(*self.raw) if self.raw else text


SURROGATE_MARK = "fuzz-lone-surrogate"
UNSTORABLE_MARK = "fuzz-unstorable-decimal"
# Invalid string content (datatypes.html#string: no code points below 32 but tab, CR, LF)
CONTROL_CHARACTERS = ["\x00", "\x01", "\x1b", "\x0b", "\x0c", "\x7f\x00"]
_STRINGISH = {"string", "markdown", "code", "id", "uri", "url", "canonical", "uuid", "oid", "date", "dateTime",
              "instant", "time", "base64Binary"}


def _wrong_json_type(element: Element) -> list[Any]:
    if not element.is_primitive:
        return ["x", 7, True]
    if element.type == "boolean":
        return ["true", 1, {"value": True}]
    if element.type in ("integer", "positiveInt", "unsignedInt"):
        return ["1", Decimal("1.5"), False]
    if element.type == "decimal":
        return ["1.0", True, [1]]
    return [42, True, {"value": "x"}, Decimal("0.5")]


@st.composite
def mutations(draw: st.DrawFn, resource: dict[str, Any]) -> Mutation:
    """``resource`` broken in one place, chosen by hypothesis among the breakages that apply to it."""
    resource = copy.deepcopy(resource)
    places = locations(resource)
    kinds = ["unknown element", "empty", "deep nesting", "repeated property name"]
    if places:
        kinds += ["wrong JSON type", "wrong array-ness"]
    if any(p.element.min > 0 for p in places):
        kinds.append("missing required element")
    if any(p.element.type in _STRINGISH for p in places):
        kinds += ["control character", "lone surrogate"]
    if any(p.element.type in ("integer", "positiveInt", "unsignedInt") for p in places):
        kinds.append("integer out of range")
    if any(p.element.type == "decimal" for p in places):
        kinds.append("unstorable decimal")
    kind = draw(st.sampled_from(kinds))
    return MUTATORS[kind](draw, resource, places)


def _set(place: Location, value: Any) -> None:
    place.container[place.key] = value  # type: ignore[index]


def _mutate_wrong_type(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from(places))
    _set(place, draw(st.sampled_from(_wrong_json_type(place.element))))
    return Mutation("wrong JSON type", resource, place.path)


def _mutate_arrayness(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from(places))
    name, element = place.element.name, place.element
    place.owner[name] = place.owner[name][0] if element.is_list else [place.owner[name]]
    return Mutation("wrong array-ness", resource, f"{place.owner_path}.{name}")


def _mutate_missing(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from([p for p in places if p.element.min > 0]))
    del place.owner[place.element.name]
    if not place.owner:
        # The element was its object's only one: the object is now empty, which json.html forbids, and that is
        # the error a careful server names first (Procedure.note[0], not Procedure.note[0].text).
        return Mutation("missing required element", resource, place.owner_path)
    name = place.element.choice or place.element.name
    return Mutation("missing required element", resource, f"{place.owner_path}.{name}")


def _objects(resource: dict[str, Any], places: list[Location]) -> list[tuple[dict[str, Any], str]]:
    found = [(resource, resource["resourceType"])]
    return found + [(p.container[p.key], p.path) for p in places  # type: ignore[index]
                    if isinstance(p.container[p.key], dict) and not p.element.is_primitive]  # type: ignore[index]


def _mutate_unknown(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    obj, path = draw(st.sampled_from(_objects(resource, places)))
    name = draw(st.sampled_from(["fuzzUnknown", "Given", "_unknown", "valueFuzz", "resourceType"]))
    if name == "resourceType" and obj is resource:
        name = "resourcetype"
    obj[name] = draw(st.sampled_from(["x", 1, {"a": "b"}, [1]]))
    return Mutation("unknown element", resource, f"{path}.{name}")


def _mutate_empty(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    obj, path = draw(st.sampled_from(_objects(resource, places)))
    candidates = [e for e in elements(resource["resourceType"] if obj is resource else _type_of(path, places))
                  if e.name not in SKIPPED and (e.is_list or not e.is_primitive) and e.name != "extension"]
    if not candidates:
        obj["extension"] = []
        return Mutation("empty", resource, f"{path}.extension")
    element = draw(st.sampled_from(candidates))
    obj[element.name] = [] if element.is_list else {}
    return Mutation("empty", resource, f"{path}.{element.name}")


def _type_of(path: str, places: list[Location]) -> str:
    return next(p.element.type for p in places if p.path == path)


def _mutate_deep(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    index = len(resource.get("extension", []))
    resource.setdefault("extension", []).append(nested_extension(draw(st.integers(52, 120))))
    return Mutation("deep nesting", resource, f"{resource['resourceType']}.extension[{index}]")


def _mutate_control(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from([p for p in places if p.element.type in _STRINGISH]))
    old = place.container[place.key]  # type: ignore[index]
    at = draw(st.integers(0, len(old) if isinstance(old, str) else 0))
    text = old if isinstance(old, str) else "x"
    _set(place, text[:at] + draw(st.sampled_from(CONTROL_CHARACTERS)) + text[at:])
    return Mutation("control character", resource, place.path)


def _mutate_surrogate(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from([p for p in places if p.element.type in _STRINGISH]))
    _set(place, SURROGATE_MARK)
    lone = draw(st.sampled_from([b"\\ud800", b"\\uDFFF", b"x\\udc00y", b"\\ud83d"]))
    return Mutation("lone surrogate", resource, place.path, (f'"{SURROGATE_MARK}"'.encode(), b'"' + lone + b'"'))


def _mutate_out_of_range(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from([p for p in places if p.element.type in ("integer", "positiveInt",
                                                                          "unsignedInt")]))
    number = draw(st.sampled_from([2**31, -(2**31) - 1, 2**63, 10**30, 10**40]))
    _set(place, Decimal(number) if abs(number) >= 2**63 else number)  # the JSON text is the same integer
    return Mutation("integer out of range", resource, place.path)


def _mutate_unstorable(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    place = draw(st.sampled_from([p for p in places if p.element.type == "decimal"]))
    _set(place, UNSTORABLE_MARK)
    number = draw(st.sampled_from([b"1." + b"0" * 40 + b"1", b"1" * 40, b"1E-7000", b"1E+7000", b"-1.0E99999"]))
    return Mutation("unstorable decimal", resource, place.path, (f'"{UNSTORABLE_MARK}"'.encode(), number))


REPEATED_MARK = "fuzz-repeated-name"


def _mutate_repeated(draw: st.DrawFn, resource: dict[str, Any], places: list[Location]) -> Mutation:
    obj, path = draw(st.sampled_from(_objects(resource, places)))
    name = draw(st.sampled_from(sorted(obj)))
    obj[REPEATED_MARK] = draw(st.sampled_from(["x", 1, {"a": "b"}]))
    return Mutation("repeated property name", resource, f"{path}.{name}",
                    (f'"{REPEATED_MARK}"'.encode(), f'"{name}"'.encode()))


MUTATORS = {
    "wrong JSON type": _mutate_wrong_type, "wrong array-ness": _mutate_arrayness,
    "missing required element": _mutate_missing, "unknown element": _mutate_unknown, "empty": _mutate_empty,
    "deep nesting": _mutate_deep, "control character": _mutate_control, "lone surrogate": _mutate_surrogate,
    "integer out of range": _mutate_out_of_range, "unstorable decimal": _mutate_unstorable,
    "repeated property name": _mutate_repeated,
}
