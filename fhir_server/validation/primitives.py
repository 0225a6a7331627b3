"""R4 JSON wire-format checks that the (lax, R4B) ``fhir.resources`` models do not make.

For every element of a resource -- through complex types, backbone elements, choice types, contained resources
and ``_element`` primitive-extension siblings -- this module checks:

* the JSON type of primitives (https://hl7.org/fhir/R4/json.html#primitive, datatypes.html#primitive):
  booleans are JSON booleans, integer types JSON integers within range, decimals JSON numbers, everything
  else a non-empty JSON string matching the regex of the type's StructureDefinition;
* array vs. single value from the element's max cardinality (json.html#cardinality); no empty arrays/objects;
* required elements (min >= 1) and at most one type of a choice element (formats.html#choice);
* codes of elements with a *required* binding in the core specification (terminologies.html#required):
  ``code`` values against the bound ValueSet, Coding/CodeableConcept codings whose system the ValueSet uses;
* unknown element names (``structure``);
* ext-1: an extension has a value or nested extensions, not both (the other R4 invariants are
  :mod:`fhir_server.validation.core_invariants`'s).

The rules come from ``data/r4-elements.json``, generated from the R4 StructureDefinitions by
``scripts/build_snapshots.py``. Pure and fast: it runs on every write.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from fhir_server.errors import Issue
from fhir_server.terminology.core import core_terminology
from fhir_server.validation.narrative import narrative_problem

DATA = Path(__file__).resolve().parent / "data" / "r4-elements.json"

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2
INT_RANGES = {"integer": (-2147483648, 2147483647), "positiveInt": (1, 2147483647),
              "unsignedInt": (0, 2147483647)}


class Row(NamedTuple):
    """One element of a type: how to check its JSON value."""

    kind: int
    target: str  # primitive type name or key of the complex/backbone type
    is_array: bool
    codes: frozenset[str] | None  # required binding of a ``code`` element
    systems: dict[str, frozenset[str]] | None  # required binding of a Coding/CodeableConcept element
    choice: str | None  # ``value`` for ``valueQuantity``
    check: Checker | None  # the primitive's checker (None for complex types)


class TypeInfo(NamedTuple):
    rows: dict[str, Row]
    required: tuple[str, ...]  # plain elements with min >= 1
    required_choices: tuple[tuple[str, tuple[str, ...]], ...]  # choice base -> its json names
    is_resource: bool


Checker = Callable[[Any], str | None]


# datatypes.html#string: strings SHALL NOT contain code points below 32 except tab, carriage return and line
# feed (U+0009, U+000D, U+000A); every string-based primitive inherits the rule, and the regexes (\S) let NUL,
# ESC and the like through.
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# RFC 3986 section 3.1: an absolute URI starts with its scheme
ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# the path of an extension directly inside another (a complex extension's part)
_SUB_EXTENSION = re.compile(r"[xX]tension\[\d+\]\.extension\[\d+\]$")


def _string_checker(name: str, regex: str | None) -> Checker:
    # The spec's regexes follow XML Schema, where \s and \S are ASCII-only.
    pattern = re.compile(regex, re.ASCII) if regex else None
    full = pattern.fullmatch if pattern else None
    dated = name in ("date", "dateTime", "instant")
    # a canonical is not judged: it names a resource by the url it declares, and an ill-formed one names none
    # (HL7's Library-zika-virus-intervention-logic refers to the value set "urn:oid:X.Y.Z", a placeholder)
    uri_like = name in ("uri", "url")

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"must be a JSON string, not {_json_type(value)}"
        if not value:
            return "must not be an empty string"
        control = _CONTROL_CHARACTER.search(value)
        if control is not None:
            return f"holds the control character U+{ord(control.group()):04X} (none below 32 but tab, CR, LF)"
        if full is not None and full(value) is None:
            return f"{value!r} is not a valid {name}"
        if dated and len(value) >= 10 and not _valid_day(value):
            return f"{value!r} is not a calendar date"
        if uri_like and value.startswith("urn:"):
            return _urn_problem(value)
        return None

    return check


# datatypes.html#uri: "urn:uuid:" and "urn:oid:" URIs carry a UUID (RFC 4122: 8-4-4-4-12 hex digits; FHIR asks
# for lower case, RFC 4122 reads either) and an OID (the R4 oid type's regex); any other URN is its scheme's own
_UUID_URN = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OID_URN = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


def _urn_problem(value: str) -> str | None:
    urn = value.partition("#")[0]
    if urn.startswith("urn:uuid:") and not _UUID_URN.fullmatch(urn):
        return f"{urn!r} is not a valid UUID URN (urn:uuid: and 8-4-4-4-12 hexadecimal digits)"
    if urn.startswith("urn:oid:") and not _OID_URN.fullmatch(urn):
        return f"{urn!r} is not a valid OID URN (urn:oid: and numbers separated by dots, the first 0, 1 or 2)"
    return None


def _integer_checker(name: str) -> Checker:
    low, high = INT_RANGES[name]

    def check(value: Any) -> str | None:
        if type(value) is not int:
            return f"must be a JSON integer, not {_json_type(value)}"
        if not low <= value <= high:
            return f"{value} is out of range for {name} ({low}..{high})"
        return None

    return check


def _check_boolean(value: Any) -> str | None:
    return None if value is True or value is False else f"must be a JSON boolean, not {_json_type(value)}"


def _check_decimal(value: Any) -> str | None:
    kind = type(value)
    if kind is Decimal:  # math.isfinite would convert to float: 1E+400 is finite, the float is not
        return None if value.is_finite() else f"{value} is not a finite decimal"
    if kind is int or kind is float:
        return None if math.isfinite(value) else f"{value} is not a finite decimal"
    return f"must be a JSON number, not {_json_type(value)}"


def _check_xhtml(value: Any) -> str | None:
    if type(value) is not str:
        return f"must be a JSON string, not {_json_type(value)}"
    return narrative_problem(value)


def _valid_day(value: str) -> bool:
    """Dates SHALL be valid dates (datatypes.html#date): the regex lets 2023-02-30 through."""
    try:
        year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    except ValueError:
        return True  # partial date: the regex already judged it
    return day <= calendar.monthrange(year, month)[1]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _checkers(primitives: dict[str, dict[str, Any]]) -> dict[str, Checker]:
    out: dict[str, Checker] = {}
    for name, spec in primitives.items():
        if name == "boolean":
            out[name] = _check_boolean
        elif name in INT_RANGES:
            out[name] = _integer_checker(name)
        elif name == "decimal":
            out[name] = _check_decimal
        elif name == "xhtml":
            out[name] = _check_xhtml
        else:
            out[name] = _string_checker(name, spec["regex"])
    return out


class ElementTable(NamedTuple):
    types: dict[str, TypeInfo]
    checkers: dict[str, Checker]
    required_value_sets: frozenset[str]
    resource_types: tuple[str, ...]  # every concrete R4 resource type, sorted
    r4b_models: frozenset[str]  # the types whose fhir.resources R4B model matches R4 (build_snapshots.py)


def _load(path: Path) -> ElementTable:
    data = json.loads(path.read_text())
    checkers = _checkers(data["primitives"])
    valuesets = {url: {s: frozenset(c) for s, c in systems.items()}
                 for url, systems in data["valuesets"].items()}
    raw: dict[str, dict[str, list[Any]]] = data["types"]
    # Primitive-extension siblings (``_birthDate``) hold an Element: id and extensions only.
    raw["Element"] = {k: raw["Extension"][k] for k in ("id", "extension")}
    resources = set(data["resources"])
    types: dict[str, TypeInfo] = {}
    for key, elements in raw.items():
        rows: dict[str, Row] = {}
        required: list[str] = []
        choices: dict[str, list[str]] = {}
        choice_min: set[str] = set()
        for name, (target, is_array, minimum, vs, choice) in elements.items():
            kind = PRIMITIVE if target in checkers else RESOURCE if target == "Resource" else COMPLEX
            bound = valuesets.get(vs) if vs else None
            codes = frozenset().union(*bound.values()) if bound and target == "code" else None
            systems = bound if bound and target in ("Coding", "CodeableConcept") else None
            rows[name] = Row(kind, target, is_array, codes, systems, choice, checkers.get(target))
            if choice:
                choices.setdefault(choice, []).append(name)
                if minimum:
                    choice_min.add(choice)
            elif minimum:
                required.append(name)
        types[key] = TypeInfo(rows, tuple(required),
                              tuple((c, tuple(choices[c])) for c in sorted(choice_min)), key in resources)
    return ElementTable(types, checkers, frozenset(valuesets), tuple(data["resources"]),
                        frozenset(data["r4bModels"]))


TYPES, CHECKERS, REQUIRED_VALUE_SETS, RESOURCE_TYPES, R4B_MODEL_TYPES = _load(DATA)
_EXTENSION, _CODING, _IDENTIFIER = TYPES["Extension"], TYPES["Coding"], TYPES["Identifier"]


def check_primitive_types(resource: dict[str, Any]) -> list[Issue]:
    """All wire-format errors of ``resource`` (a JSON object parsed with ``parse_float=Decimal``).

    Returns an empty list for a clean resource and for resource types outside the supported set.
    """
    issues: list[Issue] = []
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [_issue("structure", "a resource must be a JSON object with a resourceType string", "")]
    rtype = resource["resourceType"]
    if rtype in TYPES and TYPES[rtype].is_resource:
        _walk(resource, TYPES[rtype], rtype, issues)
    return issues


def _issue(code: str, message: str, path: str) -> Issue:
    return Issue("error", code, f"{path}: {message}" if path else message, (path,) if path else ())


def _walk(obj: dict[str, Any], info: TypeInfo, path: str, issues: list[Issue]) -> None:
    """Check one JSON object against the rows of its type."""
    if not obj:
        issues.append(_issue("structure", "JSON objects must not be empty", path))
        return
    rows = info.rows
    chosen: dict[str, str] | None = None
    for name, value in obj.items():
        row = rows.get(name)
        if row is None:
            if name[0] == "_":
                _primitive_extension(obj, name, value, rows.get(name[1:]), path, issues)
            elif not (name == "resourceType" and info.is_resource):
                issues.append(_issue("structure", f"unknown element '{name}'", f"{path}.{name}"))
            continue
        if row.choice is not None:
            chosen = chosen or {}
            if row.choice in chosen:
                issues.append(_issue("structure", f"only one of {row.choice}[x] is allowed "
                                     f"(found {chosen[row.choice]} and {name})", f"{path}.{name}"))
            chosen[row.choice] = name
        _element(obj, name, value, row, path, issues)
    if info.required or info.required_choices:
        _check_required(obj, info, path, issues)
    if info is _EXTENSION:
        _check_extension_content(obj, chosen, path, issues)
    elif info is _CODING or info is _IDENTIFIER:
        _check_system(obj, info is _CODING, path, issues)


@functools.cache
def core_value_set_urls() -> frozenset[str]:
    """The canonical urls of R4's own value sets (none is also a code system's): a frequent slip in a Coding's
    system (``http://hl7.org/fhir/ValueSet/...`` for the code system of its codes)."""
    terminology = core_terminology()
    return frozenset(terminology.urls("ValueSet")) - frozenset(terminology.urls("CodeSystem"))


def _check_system(obj: dict[str, Any], is_coding: bool, path: str, issues: list[Issue]) -> None:
    """A Coding's system identifies its code system (datatypes.html#Coding: an http URL, "urn:oid:" or
    "urn:uuid:"), so it is an absolute URI: a relative one ("#cs", "loinc") identifies nothing, and one of R4's value
    sets is no code system (HL7's validator suite, code-wrong-system-vs). An Identifier of the
    system ``urn:ietf:rfc:3986`` (identifier-registry.html: "the identifier is a URI") has a URI for its value:
    a warning only, as three of HL7's own examples break it (Organization-2.16.840.1.113883.19.5 states a bare
    OID, Bundle-xds and StructureMap-example OIDs that are none), and the identifier is still matched exactly."""
    system = obj.get("system")
    if type(system) is not str or not system:
        return
    if is_coding:
        if not ABSOLUTE_URI.match(system):
            issues.append(_issue("value", f"a Coding's system must be an absolute URI, not '{system[:200]}'",
                                 f"{path}.system"))
        elif system in core_value_set_urls():
            issues.append(_issue("value", f"a Coding's system must name a code system: {system[:200]} is one of "
                                 "R4's value sets (the system of its codes is named in its compose)", f"{path}.system"))
        return
    value = obj.get("value")
    if system == "urn:ietf:rfc:3986" and type(value) is str and value and (
            not ABSOLUTE_URI.match(value) or _urn_problem(value) is not None):
        where = f"{path}.value"
        issues.append(Issue("warning", "value", f"{where}: the system urn:ietf:rfc:3986 makes the value a URI: "
                            f"'{value[:200]}' is not an absolute URI (such as urn:oid:2.16.840.1.113883.6.57)",
                            (where,)))


def _check_extension_content(obj: dict[str, Any], chosen: dict[str, str] | None, path: str,
                             issues: list[Issue]) -> None:
    """ext-1 (extensibility.html): an extension has a value or nested extensions, not both and not neither. Here
    rather than with the other invariants (``core_invariants``): extensions are everywhere, and the wire walk
    visits them all anyway.

    And its url: an extension's url "SHALL be the canonical URL of a StructureDefinition that defines the
    extension" (extensibility.html#extension), so an absolute URL; only the parts of a complex extension (the
    extensions directly inside another) are named by a plain name relative to it (``species`` in
    ``patient-animal``)."""
    has_value = bool(chosen and "value" in chosen) or any(k.startswith("_value") for k in obj)
    if ("extension" in obj) == has_value:
        issues.append(Issue("error", "invariant", f"{path}: ext-1: Must have either extensions or value[x], not "
                            "both", (path,)))
    url = obj.get("url")
    if type(url) is str and url and not ABSOLUTE_URI.match(url) and not _SUB_EXTENSION.search(path):
        issues.append(_issue("value", f"an extension's url must be an absolute URL (the canonical URL of its "
                             f"definition), not '{url[:200]}'", f"{path}.url"))


def _check_required(obj: dict[str, Any], info: TypeInfo, path: str, issues: list[Issue]) -> None:
    for name in info.required:
        if name not in obj and "_" + name not in obj:
            issues.append(_issue("required", f"missing required element '{name}'", f"{path}.{name}"))
    for base, names in info.required_choices:
        if not any(n in obj or "_" + n in obj for n in names):
            issues.append(_issue("required", f"missing required element '{base}[x]'", f"{path}.{base}"))


def _element(obj: dict[str, Any], name: str, value: Any, row: Row, path: str, issues: list[Issue]) -> None:
    if row.is_array:
        if type(value) is not list:
            issues.append(_issue("structure", "must be a JSON array (max is *)", f"{path}.{name}"))
            return
        if not value:
            issues.append(_issue("structure", "arrays must not be empty", f"{path}.{name}"))
            return
        for i, item in enumerate(value):
            if row.check is not None and _primitive_ok(item, row):
                continue
            if item is None and row.kind == PRIMITIVE and _has_extension_at(obj, name, i):
                continue  # the value is absent but its extensions are in _name[i]
            _value(item, row, f"{path}.{name}[{i}]", issues)
    elif type(value) is list:
        issues.append(_issue("structure", "must not be a JSON array (max is 1)", f"{path}.{name}"))
    elif row.check is None or not _primitive_ok(value, row):
        _value(value, row, f"{path}.{name}", issues)


def _primitive_ok(value: Any, row: Row) -> bool:
    """Fast path: a valid primitive needs no path string (built only for issues)."""
    assert row.check is not None
    return row.check(value) is None and (row.codes is None or value in row.codes)


def _value(value: Any, row: Row, path: str, issues: list[Issue]) -> None:
    if row.kind == PRIMITIVE:
        message = row.check(value) if row.check is not None else None
        if message is not None:
            issues.append(_issue("structure" if "must be a JSON" in message else "value", message, path))
        elif row.codes is not None and value not in row.codes:
            issues.append(_issue("code-invalid", f"'{value}' is not in the required value set", path))
        return
    if type(value) is not dict:
        issues.append(_issue("structure", f"must be a JSON object, not {_json_type(value)}", path))
        return
    if row.kind == RESOURCE:
        _contained(value, path, issues)
        return
    _walk(value, TYPES[row.target], path, issues)
    if row.systems is not None:
        _check_codings(value, row, path, issues)


def _contained(value: dict[str, Any], path: str, issues: list[Issue]) -> None:
    rtype = value.get("resourceType")
    if not isinstance(rtype, str):
        issues.append(_issue("structure", "a contained resource needs a resourceType", path))
    elif rtype in TYPES and TYPES[rtype].is_resource:
        _walk(value, TYPES[rtype], path, issues)
    else:  # not an R4 resource type (a datatype's name included): nothing to check it against
        issues.append(_issue("structure", f"'{rtype[:64]}' is not an R4 resource type", f"{path}.resourceType"))


def _check_codings(value: dict[str, Any], row: Row, path: str, issues: list[Issue]) -> None:
    """Required binding: a coding in one of the bound systems must use a code of the value set."""
    assert row.systems is not None
    if row.target == "Coding":
        codings, prefix = [value], path
    else:
        codings, prefix = value.get("coding") or [], f"{path}.coding"
        if type(codings) is not list:
            return
    for i, coding in enumerate(codings):
        if type(coding) is not dict:
            continue
        system = coding.get("system")
        # a system of the wrong JSON type (a list: unhashable, a 500 before) is reported by the type check
        allowed = row.systems.get(system) if type(system) is str else None
        code = coding.get("code")
        # a code of the wrong JSON type (a list: unhashable) is reported by the type check alone
        if allowed is not None and (code is None or type(code) is str) and code not in allowed:
            where = prefix if row.target == "Coding" else f"{prefix}[{i}]"
            issues.append(_issue("code-invalid", f"code '{coding.get('code')}' of {coding.get('system')} is "
                                 "not in the required value set", f"{where}.code"))


def _has_extension_at(obj: dict[str, Any], name: str, index: int) -> bool:
    ext = obj.get("_" + name)
    return type(ext) is list and index < len(ext) and type(ext[index]) is dict


def _primitive_extension(obj: dict[str, Any], name: str, value: Any, row: Row | None, path: str,
                         issues: list[Issue]) -> None:
    """``_name`` carries id/extensions of primitive ``name`` (json.html#primitive), addressed as ``name``."""
    base = name[1:]
    where = f"{path}.{base}"
    if row is None or row.kind != PRIMITIVE:
        issues.append(_issue("structure", f"unknown element '{name}'", f"{path}.{name}"))
        return
    element = TYPES["Element"]
    if not row.is_array:
        if type(value) is list:
            issues.append(_issue("structure", "must not be a JSON array (max is 1)", where))
        elif type(value) is not dict:
            issues.append(_issue("structure", f"must be a JSON object, not {_json_type(value)}", where))
        else:
            _walk(value, element, where, issues)
        return
    values = obj.get(base)
    if type(value) is not list or (type(values) is list and len(values) != len(value)):
        issues.append(_issue("structure", f"'{name}' must be an array as long as '{base}'", where))
        return
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if item is None:
            if values is None or values[i] is None:
                issues.append(_issue("structure", "a value or its extensions must be present", at))
        elif type(item) is not dict:
            issues.append(_issue("structure", f"must be a JSON object, not {_json_type(item)}", at))
        else:
            _walk(item, element, at, issues)
