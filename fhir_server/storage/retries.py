"""Counting what the driver's convenient-transaction API hides: each re-run of a transaction's callback (after a
``TransientTransactionError``) and each write conflict that caused one
(https://www.mongodb.com/docs/manual/core/transactions-in-applications/). The counts go to
``fhir_server.metrics`` (no HTTP here: storage never knows it is served)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import PyMongoError

from fhir_server import metrics

S = TypeVar("S")
T = TypeVar("T")
WRITE_CONFLICT = 112  # the server's error code (also labelled TransientTransactionError)


def counted(work: Callable[[S], Awaitable[T]]) -> Callable[[S], Awaitable[T]]:
    """``work`` as a transaction callback that reports its re-runs and the write conflicts it meets."""
    runs = 0

    async def attempt(session: S) -> T:
        nonlocal runs
        runs += 1
        if runs > 1:
            metrics.transaction_retried()
        try:
            return await work(session)
        except PyMongoError as exc:
            if getattr(exc, "code", None) == WRITE_CONFLICT:
                metrics.write_conflict()
            raise

    return attempt
