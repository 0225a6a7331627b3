"""Reads run concurrently, except in a session: a MongoDB session (a transaction's) runs one operation at a
time (https://www.mongodb.com/docs/manual/core/transactions/: the operations of a transaction share one
session), so inside one the same reads run one after the other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fhir_server.storage.store import Session

T = TypeVar("T")
U = TypeVar("U")


async def gather(session: Session, calls: list[Awaitable[T]]) -> list[T]:
    """Every call's result, in order: concurrently without a session, one by one with one."""
    if session is None:
        return list(await asyncio.gather(*calls))
    return [await call for call in calls]


async def both(session: Session, first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Two calls of different types, run as ``gather`` runs them."""
    if session is None:
        return await asyncio.gather(first, second)
    return await first, await second
