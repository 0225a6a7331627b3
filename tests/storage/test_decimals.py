"""Decimals through MongoDB (``storage/client.py``, ``DecimalCodec``; https://hl7.org/fhir/R4/datatypes.html#decimal):
stored as Decimal128, read back as the Decimal that was written, exponent and sign included, whether or not an equal
value was read before (the decoder remembers values by their 16 bytes, never by numeric equality)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import unique

# Pairs of equal numbers written differently, and the values Decimal128 has beside the finite ones.
WRITTEN = ["1.5", "1.50", "1.500E+1", "15", "0", "-0", "0.000", "-1.5", "1E-7", "0.0000001",
           "9999999999999999999999999999999999", "Infinity", "-Infinity"]


@pytest.mark.parametrize("rounds", [1, 2])
async def test_every_decimal_comes_back_as_written_even_after_an_equal_one(db: AsyncDatabase, rounds: int) -> None:
    collection = db[f"decimals_{unique()}"]
    await collection.insert_one({"_id": 1, "values": [Decimal(text) for text in WRITTEN]})
    for _ in range(rounds):  # the second round reads every value from the decoder's memory
        stored = await collection.find_one({"_id": 1})
        assert stored is not None
        assert [str(value) for value in stored["values"]] == [str(Decimal(text)) for text in WRITTEN]
        assert all(type(value) is Decimal for value in stored["values"])
    await collection.drop()


async def test_a_nan_comes_back_as_nan(db: AsyncDatabase) -> None:
    collection = db[f"decimals_{unique()}"]
    await collection.insert_one({"_id": 1, "value": Decimal("NaN")})
    for _ in range(2):
        stored = await collection.find_one({"_id": 1})
        assert stored is not None and stored["value"].is_nan()
    await collection.drop()
