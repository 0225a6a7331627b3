"""Keyset page tokens: opaque, round-trip typed values, reject garbage/tampering; the strictly-after filter."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from bson.decimal128 import Decimal128

from fhir_server.errors import InvalidRequest
from fhir_server.search.paging import after_filter, decode_page_token, encode_page_token, sort_values

SORT = [("sp._sort.date.a", 1), ("_id", 1)]


def test_token_round_trips_datetimes_decimals_and_nulls() -> None:
    values = [datetime(2007, 3, 4, tzinfo=UTC), "o1"]
    token = encode_page_token(values, SORT, meta={"d": "prev"})
    assert "=" not in token
    assert decode_page_token(token, SORT) == (values, {"d": "prev"})
    sort = [("sp._sort.v.a", 1), ("x", -1), ("_id", 1)]
    values2 = [Decimal128("1.50"), None, "o2"]
    assert decode_page_token(encode_page_token(values2, sort), sort)[0] == values2


@pytest.mark.parametrize("token", ["", "garbage", "!!!!", base64.urlsafe_b64encode(b'{"v":[]}').decode()])
def test_garbage_token_is_a_400(token: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_page_token(token, SORT)


def test_edited_token_is_rejected() -> None:
    token = encode_page_token([None, "o1"], SORT)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[10] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidRequest):
        decode_page_token(tampered, SORT)


def test_token_of_another_sort_or_secret_is_rejected() -> None:
    token = encode_page_token([None, "o1"], SORT, secret=b"a")
    with pytest.raises(InvalidRequest):
        decode_page_token(token, [("_id", 1)], secret=b"a")
    with pytest.raises(InvalidRequest):
        decode_page_token(token, SORT, secret=b"b")


def test_after_filter_expands_multi_key_sorts() -> None:
    assert after_filter([("a", 1), ("_id", 1)], [5, "x"]) == {
        "$or": [{"a": {"$gt": 5}}, {"$and": [{"a": 5}, {"_id": {"$gt": "x"}}]}]
    }


def test_after_filter_handles_missing_values_and_descending_keys() -> None:
    # ascending, last row had no value: the rest of the nulls, then every non-null
    assert after_filter([("a", 1), ("_id", 1)], [None, "x"]) == {
        "$or": [{"a": {"$ne": None}}, {"$and": [{"a": None}, {"_id": {"$gt": "x"}}]}]
    }
    # descending: smaller values, then the nulls (they sort last)
    assert after_filter([("a", -1), ("_id", 1)], [5, "x"]) == {
        "$or": [{"$or": [{"a": {"$lt": 5}}, {"a": None}]}, {"$and": [{"a": 5}, {"_id": {"$gt": "x"}}]}]
    }
    # descending, last row had no value: only the nulls after it
    assert after_filter([("a", -1), ("_id", 1)], [None, "x"]) == {"$and": [{"a": None}, {"_id": {"$gt": "x"}}]}


def test_sort_values_reads_dotted_paths() -> None:
    doc = {"_id": "o1", "sp": {"_sort": {"date": {"a": 1}}}}
    assert sort_values(doc, [("sp._sort.date.a", 1), ("sp._sort.code.a", 1), ("_id", 1)]) == [1, None, "o1"]
