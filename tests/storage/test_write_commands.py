"""The claims' and report rows' small write commands (``storage/write_commands.py``) behave as ``bulk_write`` did:
in the caller's transaction (rolled back with it, a concurrent writer of the same document conflicts), a write
error raised as ``BulkWriteError``, and outside a transaction written with the majority write concern."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.read_concern import ReadConcern

from fhir_server.storage.client import MAJORITY, connect
from fhir_server.storage.write_commands import delete, raise_for_reply, run_writes, upsert


@pytest.fixture
async def scratch(mongo_uri: str) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient = connect(mongo_uri)
    db = client[f"write_commands_{uuid.uuid4().hex[:8]}"]
    await db.create_collection("rows")
    yield db
    await client.drop_database(db.name)
    await client.close()


async def test_upserts_create_replace_and_update_documents_with_exact_decimals(scratch: AsyncDatabase) -> None:
    await run_writes(scratch, "update", "rows", [upsert("a", {"n": Decimal("1.50")}),
                                                 upsert("b", {"$set": {"owner": "Patient/1"}})], None)
    await run_writes(scratch, "update", "rows", [upsert("a", {"n": Decimal("2.0")})], None)
    stored = {doc["_id"]: doc async for doc in scratch["rows"].find()}
    assert stored == {"a": {"_id": "a", "n": Decimal("2.0")}, "b": {"_id": "b", "owner": "Patient/1"}}
    assert str(stored["a"]["n"]) == "2.0"  # the digits as written (Decimal128 keeps the exponent)


async def test_deletes_remove_the_documents_named(scratch: AsyncDatabase) -> None:
    await run_writes(scratch, "update", "rows", [upsert("a", {"n": 1}), upsert("b", {"n": 2})], None)
    await run_writes(scratch, "delete", "rows", [delete("a"), delete("missing")], None)
    assert [doc["_id"] async for doc in scratch["rows"].find()] == ["b"]


async def test_writes_in_a_transaction_are_rolled_back_with_it(scratch: AsyncDatabase) -> None:
    async with scratch.client.start_session() as session:
        await session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=MAJORITY)
        await run_writes(scratch, "update", "rows", [upsert("a", {"n": 1})], session)
        assert await scratch["rows"].find_one({"_id": "a"}, session=session) == {"_id": "a", "n": 1}
        await session.abort_transaction()
    assert await scratch["rows"].find_one({"_id": "a"}) is None


async def test_a_concurrent_transaction_writing_the_same_claim_conflicts(scratch: AsyncDatabase) -> None:
    """What makes two identical conditional creates produce one resource (``ResourceStore.claim``)."""
    await run_writes(scratch, "update", "rows", [upsert("claim", {"$set": {"owner": "x"}})], None)
    async with scratch.client.start_session() as first, scratch.client.start_session() as second:
        await first.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=MAJORITY)
        await second.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=MAJORITY)
        await run_writes(scratch, "update", "rows", [upsert("claim", {"$set": {"owner": "Patient/1"}})], first)
        with pytest.raises(OperationFailure) as raised:
            await run_writes(scratch, "update", "rows", [upsert("claim", {"$set": {"owner": "Patient/2"}})], second)
        assert raised.value.has_error_label("TransientTransactionError")  # the driver re-runs the transaction
        await first.commit_transaction()
    assert (await scratch["rows"].find_one({"_id": "claim"}))["owner"] == "Patient/1"


async def test_a_write_error_is_a_bulk_write_error(scratch: AsyncDatabase) -> None:
    with pytest.raises(BulkWriteError) as raised:
        await run_writes(scratch, "update", "rows", [upsert("a", {"$bad": 1})], None)
    assert raised.value.details["writeErrors"]


def test_a_write_concern_error_in_an_ok_reply_is_a_bulk_write_error() -> None:
    """The majority did not acknowledge in time: the write may be lost on a failover, so the caller must know."""
    reply = {"ok": 1, "n": 1, "nModified": 1,
             "writeConcernError": {"code": 64, "codeName": "WriteConcernFailed",
                                   "errmsg": "waiting for replication timed out"}}
    with pytest.raises(BulkWriteError) as raised:
        raise_for_reply("update", reply)
    assert raised.value.details["writeConcernErrors"][0]["code"] == 64
    raise_for_reply("update", {"ok": 1, "n": 1, "nModified": 1})  # a clean reply raises nothing
