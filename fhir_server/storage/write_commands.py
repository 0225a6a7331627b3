"""Small write commands sent as the server receives them (https://www.mongodb.com/docs/manual/reference/command/update/).

A transaction Bundle's conditional-create claims and its report rows are a few small upserts each, written at every
transaction. ``bulk_write`` sends exactly one ``update`` command for them, but builds a bulk object around it first
(a copy of the collection with other codec options, one operation object per write, a result merged by hand):
~50-80 us of the server's CPU per command (bench/README.md, "Transaction ingest, the write path's small
costs"). Here the command is built directly and run with ``AsyncDatabase.command`` in the caller's session, so
it joins its transaction as any operation does (the session adds the transaction fields; no write concern of its
own inside a transaction; outside one, the majority write concern every write of the store has).

Errors stay what ``bulk_write`` raises: a command error (a write conflict with a concurrent transaction, with the
server's ``TransientTransactionError`` label that makes the driver re-run the transaction) is the driver's
``OperationFailure``; a write error of one of the writes, or a write concern error, is a ``BulkWriteError``
with the server's reply.
Only small batches belong here: the command is one BSON document (16 MB), where ``bulk_write`` would split it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from fhir_server.storage.client import CODEC_OPTIONS, MAJORITY

Write = dict[str, Any]


def upsert(key: Any, replacement_or_update: dict[str, Any]) -> Write:
    """One statement of an ``update`` command: the document ``_id`` ``key`` replaced or updated, created if
    missing (``ReplaceOne``/``UpdateOne`` with ``upsert=True``)."""
    return {"q": {"_id": key}, "u": replacement_or_update, "upsert": True}


def delete(key: Any) -> Write:
    """One statement of a ``delete`` command: the document ``_id`` ``key`` (``DeleteOne``)."""
    return {"q": {"_id": key}, "limit": 1}


async def run_writes(db: AsyncDatabase, command: str, collection: str, writes: Sequence[Write],
                     session: AsyncClientSession | None) -> dict[str, Any]:
    """``command`` (``update`` or ``delete``) of ``writes`` on ``collection``, ordered, in ``session``; the
    server's reply. Raises as ``bulk_write`` does (module docstring)."""
    spec: dict[str, Any] = {command: collection, "updates" if command == "update" else "deletes": list(writes),
                            "ordered": True}
    if session is None or not session.in_transaction:  # a transaction's commit carries its write concern
        spec["writeConcern"] = MAJORITY.document
    reply: dict[str, Any] = await db.command(spec, session=session, codec_options=CODEC_OPTIONS)
    raise_for_reply(command, reply)
    return reply


def raise_for_reply(command: str, reply: dict[str, Any]) -> None:
    """A reply with ``ok: 1`` may still carry write errors, or a write concern error (the majority did not
    acknowledge in time, outside a transaction): ``db.command`` raises for neither, ``bulk_write`` for both."""
    concern = reply.get("writeConcernError")
    if reply.get("writeErrors") or concern:
        raise BulkWriteError({"writeErrors": reply.get("writeErrors") or [],
                              "writeConcernErrors": [concern] if concern else [],
                              "nInserted": 0, "nUpserted": len(reply.get("upserted", ())),
                              "nMatched": reply.get("n", 0), "nModified": reply.get("nModified", 0),
                              "nRemoved": reply.get("n", 0) if command == "delete" else 0,
                              "upserted": reply.get("upserted", [])})
