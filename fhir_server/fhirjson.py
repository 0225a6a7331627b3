"""FHIR JSON in and out without losing anything.

Decimal precision is significant in FHIR (https://hl7.org/fhir/R4/datatypes.html#decimal): ``1.50`` must come
back as ``1.50``. Bodies are parsed with ``decimal.Decimal`` for every JSON number with a fraction or exponent,
stored in MongoDB as Decimal128 (which keeps the exponent), and written back verbatim through
``orjson.Fragment``.
"""

from __future__ import annotations

import decimal
import json
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


def _parse_decimal(text: str) -> decimal.Decimal:
    try:
        return _DECIMAL128.create_decimal(text)
    except decimal.DecimalException as exc:
        raise InvalidRequest(f"The number {text[:40]} cannot be stored exactly (a decimal has at most 34 "
                             "significant digits)", code="value") from exc


def _parse_int(text: str) -> int | decimal.Decimal:
    # BSON integers are 64-bit: a larger JSON integer can only be a FHIR decimal, so keep it as one.
    value = int(text)
    return value if -_INT64 <= value < _INT64 else _parse_decimal(text)


_STRICT_DECODER = json.JSONDecoder(parse_float=_parse_decimal, parse_int=_parse_int,
                                   parse_constant=_reject_constant)


def loads(body: bytes | str) -> Any:
    """Parse JSON, keeping decimals exact. Raises InvalidRequest (400) on malformed input."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
        return _STRICT_DECODER.decode(text)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Body is not UTF-8: {exc}", code="structure") from exc
    except ValueError as exc:
        raise InvalidRequest(f"Malformed JSON: {exc}", code="structure") from exc


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
