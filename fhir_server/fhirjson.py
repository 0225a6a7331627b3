"""FHIR JSON in and out without losing anything.

Decimal precision is significant in FHIR (https://hl7.org/fhir/R4/datatypes.html#decimal): ``1.50`` must come
back as ``1.50``. Bodies are parsed with ``decimal.Decimal`` for every JSON number with a fraction or exponent,
stored in MongoDB as Decimal128 (which keeps the exponent), and written back verbatim through
``orjson.Fragment``.

Hostile input is refused with a 400 before anything uses it: nesting deeper than ``JsonLimits.max_depth``
(Python's decoder would otherwise exhaust its recursion limit at about 1,000 levels, and MongoDB refuses
documents nested deeper than 180), arrays longer than ``JsonLimits.max_array_items`` (their index values
overflow a MongoDB transaction), a property name repeated in one object (RFC 8259 section 4 leaves the
meaning to the receiver; a FHIR element is one property, https://hl7.org/fhir/R4/json.html), and a ``\\uD800``
escape without its pair (a lone surrogate is not Unicode text and cannot be stored as UTF-8).
"""

from __future__ import annotations

import decimal
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.errors import InvalidRequest

_INT64 = 2**63


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# BSON Decimal128 (34 significant digits, exponents up to 6144): a number it cannot hold as written would be
# stored rounded, as 0 or as Infinity, so it is refused (400) instead.
_DECIMAL128 = decimal.Context(prec=34, Emin=-6143, Emax=6144, clamp=1, traps=[
    decimal.Inexact, decimal.Rounded, decimal.Overflow, decimal.Underflow, decimal.Clamped])


class _UnstorableNumber(str):
    """A JSON number Decimal128 cannot hold, kept as its text (only while locating it for the error)."""


def _parse_decimal(text: str) -> decimal.Decimal:
    try:
        return _DECIMAL128.create_decimal(text)
    except decimal.DecimalException as exc:
        raise _unstorable(text) from exc


def _unstorable(text: str, where: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"The number {text[:40]} cannot be stored exactly (a decimal has at most 34 "
                          "significant digits)", code="value", expression=(where,) if where else ())


def _number_or_marker(text: str) -> Any:
    try:
        return _parse_int(text) if text.lstrip("-").isdigit() else _parse_decimal(text)
    except InvalidRequest:
        return _UnstorableNumber(text)


def _parse_int(text: str) -> int | decimal.Decimal:
    # BSON integers are 64-bit: a larger JSON integer can only be a FHIR decimal, so keep it as one.
    value = int(text)
    return value if -_INT64 <= value < _INT64 else _parse_decimal(text)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _repeated(_repeated_name(pairs))
    return obj


def _repeated_name(pairs: list[tuple[str, Any]]) -> str:
    return next(name for name, times in Counter(name for name, _ in pairs).items() if times > 1)


def _repeated(name: str, where: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"The property '{name[:100]}' appears more than once in one object", code="structure",
                          expression=(where,) if where else ())


class _RepeatedName(dict[str, Any]):
    """An object with a property name given twice (only while locating it for the error)."""

    repeated = ""


def _names_or_marker(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _RepeatedName()
    for name, value in pairs:  # the first occurrence: a repeated resourceType still names the resource's type
        marked.setdefault(name, value)
    marked.repeated = _repeated_name(pairs)
    return marked


_STRICT_DECODER = json.JSONDecoder(parse_float=_parse_decimal, parse_int=_parse_int,
                                   parse_constant=_reject_constant, object_pairs_hook=_unique_names)
# Decodes what _STRICT_DECODER refused for a number or a repeated name, to say where it is.
_LOCATING_DECODER = json.JSONDecoder(parse_float=_number_or_marker, parse_int=_number_or_marker,
                                     parse_constant=_reject_constant, object_pairs_hook=_names_or_marker)


@dataclass(frozen=True)
class JsonLimits:
    """How deep and how wide a request body may be (``FHIR_MAX_JSON_DEPTH``, ``FHIR_MAX_JSON_ARRAY_ITEMS``).

    The deepest of HL7's R4 examples is nested 21 levels (QuestionnaireResponse-ussg-fht-answers), the longest
    array has 28,517 elements (ImplementationGuide-fhir)."""

    max_depth: int = 100
    max_array_items: int = 50_000


DEFAULT_LIMITS = JsonLimits()
# A UTF-16 surrogate escape: only then can a decoded string hold a lone surrogate (raw UTF-8 cannot encode one)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(body: bytes | str, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON, keeping decimals exact. Raises InvalidRequest (400) on malformed or hostile input."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
        value = _STRICT_DECODER.decode(text)
    except InvalidRequest as exc:  # a number Decimal128 cannot hold exactly, a repeated name: say where it is
        raise _located(text, limits) or exc from None
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Body is not UTF-8: {exc}", code="structure") from exc
    except ValueError as exc:
        raise InvalidRequest(f"Malformed JSON: {exc}", code="structure") from exc
    except RecursionError as exc:  # nested deeper than the interpreter's stack (about 1,000 levels)
        raise _too_deep(limits) from exc
    _check_shape(value, limits)
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value)
    return value


def _too_deep(limits: JsonLimits, where: tuple[str, ...] = ()) -> InvalidRequest:
    return InvalidRequest(f"The JSON is nested deeper than {limits.max_depth} levels", code="structure",
                          expression=where)


def _located(text: str, limits: JsonLimits) -> InvalidRequest | None:
    """The first unstorable number or repeated property name of ``text``, as an error naming its location."""
    try:
        value = _LOCATING_DECODER.decode(text)
        _check_shape(value, limits)
    except InvalidRequest as exc:  # the body has a worse problem
        return exc
    except (ValueError, RecursionError):  # malformed after the problem: its error stands
        return None
    found = locate(value, lambda node, _depth: type(node) in (_UnstorableNumber, _RepeatedName))
    if found is None:
        return None
    where, node = found
    if type(node) is _RepeatedName:
        return _repeated(node.repeated, f"{where}.{_printable(node.repeated)}")
    return _unstorable(str(node), where)


# -- where something is, said as a FHIRPath-like location (Patient.name[0].family); only on the error path ---


def _root_name(value: Any) -> str:
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if type(kind) is str and kind.isalnum() else "$"


def _printable(name: str) -> str:
    """A property name as it may appear in a response: no lone surrogate, not endless."""
    return name[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def _children(node: Any, path: str) -> list[tuple[Any, str]]:
    if type(node) is dict:
        return [(child, f"{path}.{_printable(name)}") for name, child in reversed(node.items())]
    if type(node) is list:
        return [(child, f"{path}[{index}]") for index, child in reversed(list(enumerate(node)))]
    return []


def locate(value: Any, wanted: Callable[[Any, int], bool]) -> tuple[str, Any] | None:
    """The location and the node of the first node (depth first, in document order) for which
    ``wanted(node, depth)`` holds; the root is depth 1 and is named after its ``resourceType`` (``$`` without)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, _root_name(value))]
    while stack:
        node, depth, path = stack.pop()
        if wanted(node, depth):
            return path, node
        stack += [(child, depth + 1, at) for child, at in _children(node, path)]
    return None


def _where(value: Any, wanted: Callable[[Any, int], bool]) -> tuple[str, ...]:
    """``expression`` of an issue about the first node ``wanted``: its location, or nothing."""
    found = locate(value, wanted)
    return (found[0],) if found else ()


def _check_shape(value: Any, limits: JsonLimits) -> None:
    """Depth and array lengths, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)] if type(value) is dict or type(value) is list else []
    push, pop = stack.append, stack.pop
    while stack:
        node, depth = pop()
        if depth > limits.max_depth:
            raise _too_deep(limits, _where(value, lambda n, d: d > limits.max_depth and type(n) in (dict, list)))
        if type(node) is dict:
            children: Any = node.values()
        else:
            if len(node) > limits.max_array_items:
                raise _too_long(value, node, limits)
            children = node
        for child in children:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))


def _too_long(value: Any, array: list[Any], limits: JsonLimits) -> InvalidRequest:
    return InvalidRequest(f"An array has {len(array)} elements; at most {limits.max_array_items} are accepted",
                          code="too-costly", expression=_where(value, lambda node, _depth: node is array))


def _check_surrogates(value: Any) -> None:
    try:
        orjson.dumps(value, default=_default)  # refuses a lone surrogate in any string, name or value
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest("A string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF); it is not "
                             "Unicode text", code="structure", expression=_where(value, _holds_surrogate)) from exc


def _holds_surrogate(node: Any, _depth: int) -> bool:
    texts = [node] if type(node) is str else list(node) if type(node) is dict else []
    return any(_LONE_SURROGATE.search(text) for text in texts)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(_decimal_text(value))
    # bson.Decimal128 without importing bson here
    to_decimal = getattr(value, "to_decimal", None)
    if to_decimal is not None:
        return orjson.Fragment(_decimal_text(to_decimal()))
    raise TypeError(f"Cannot serialise {type(value).__name__}")


def _decimal_text(value: decimal.Decimal) -> str:
    # str() keeps the digits and the exponent: 1.50 -> "1.50", 1E-22 -> "1E-22" as in HL7's examples.
    # (0.0000001 and 1E-7 are the same Decimal; both come back as "1E-7", an equal JSON number.)
    return str(value)


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)
