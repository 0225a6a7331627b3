"""MongoDB client configuration: exact decimals, UTC datetimes, majority writes."""

from __future__ import annotations

import decimal
from functools import lru_cache
from typing import Any

from bson.codec_options import CodecOptions, TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128, create_decimal128_context
from pymongo import AsyncMongoClient
from pymongo.write_concern import WriteConcern

_D128_CONTEXT = create_decimal128_context()


class DecimalCodec(TypeCodec):
    """Python Decimal <-> BSON Decimal128; Decimal128 keeps the exponent, so ``1.50`` stays ``1.50``."""

    python_type = decimal.Decimal
    bson_type = Decimal128

    def transform_python(self, value: Any) -> Decimal128:
        return _decimal128(value.as_tuple())

    def transform_bson(self, value: Any) -> decimal.Decimal:
        """The Decimal of a Decimal128, remembered by its 16 bytes (``bid``: 1.5 and 1.50 differ): bson's
        conversion is ~15-19 us of Python per value and was a fifth of an export's CPU (cProfile of a system
        ``$export``, bench/README "Decoding decimals"), while a registry's values repeat (doses, lab values of a
        few digits). A Decimal is immutable: one object can be shared by every document holding the value."""
        bid = value.bid
        found = _DECIMALS.get(bid)
        if found is None:
            if len(_DECIMALS) >= _DECIMALS_KEPT:
                _DECIMALS.clear()  # bounded; the values in use come back at once
            found = _DECIMALS[bid] = value.to_decimal()
        return found


_DECIMALS: dict[bytes, decimal.Decimal] = {}
_DECIMALS_KEPT = 16384  # about 2.5 MB


def forget_decimals() -> None:
    """Empty the decoder's memory of Decimals (a benchmark's cold start)."""
    _DECIMALS.clear()


@lru_cache(maxsize=4096)
def _decimal128(digits: decimal.DecimalTuple) -> Decimal128:
    """The Decimal128 of a decimal given as its sign, digits and exponent (``Decimal.as_tuple``: 1.5 and 1.50
    are equal Decimals but two keys here). Remembered: a conversion costs ~15 us of Python (a registry
    resource's values repeat: doses, units of the same lab), and a Decimal128 is immutable."""
    with decimal.localcontext(_D128_CONTEXT) as ctx:
        return Decimal128(ctx.create_decimal(decimal.Decimal(digits)))  # type: ignore[arg-type]  # NaN: "n"


CODEC_OPTIONS: CodecOptions = CodecOptions(
    tz_aware=True, type_registry=TypeRegistry([DecimalCodec()])
)


def connect(uri: str, **kwargs: Any) -> AsyncMongoClient:
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        type_registry=TypeRegistry([DecimalCodec()]),
        w="majority",
        retryWrites=True,
        retryReads=True,
        **kwargs,
    )


MAJORITY = WriteConcern("majority")
