"""Transient failures of MongoDB, told apart from errors, and bounded in time.

A database that is unreachable, a primary being elected, a node shutting down, a write conflict that outlasts
the server's budget: none is the client's fault nor a server bug, so the answer is ``503 Service Unavailable``
with ``Retry-After`` and an OperationOutcome ``transient`` (RFC 9110 15.6.4, 10.2.3), never a 500 and never a
hang. Every read and every transaction of ``ResourceStore`` runs under the driver's client-side operation
timeout (https://www.mongodb.com/docs/manual/reference/connection-string/#mongodb-urioption-urioption.timeoutMS,
``pymongo.timeout``): the convenient-transaction API stops re-running a conflicting transaction at that deadline
instead of after its own 120 s, and a read of a paused or unreachable server fails at it instead of waiting for
the operating system's TCP timeouts.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import pymongo
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError, WTimeoutError

from fhir_server.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")

RETRY_AFTER_SECONDS = 5
# Server error codes that say "not now" (https://github.com/mongodb/mongo/blob/master/src/mongo/base/error_codes.yml):
# HostUnreachable 6, HostNotFound 7, LockTimeout 24, MaxTimeMSExpired 50, NetworkTimeout 89, ShutdownInProgress 91,
# WriteConflict 112, PrimarySteppedDown 189, NoSuchTransaction 251 (aborted by the server's transaction lifetime
# limit), ExceededTimeLimit 262, SocketException 9001, NotWritablePrimary 10107, InterruptedAtShutdown 11600,
# InterruptedDueToReplStateChange 11602, NotPrimaryNoSecondaryOk 13435, NotPrimaryOrSecondary 13436.
_TRANSIENT_CODES = frozenset({6, 7, 24, 50, 89, 91, 112, 189, 251, 262, 9001, 10107, 11600, 11602, 13435, 13436})
_TRANSIENT_LABELS = ("TransientTransactionError", "RetryableWriteError", "UnknownTransactionCommitResult")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is MongoDB being unavailable for now (a retry later may succeed), not an error."""
    if not isinstance(exc, PyMongoError):
        return False
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError) or exc.timeout:
        return True
    if any(exc.has_error_label(label) for label in _TRANSIENT_LABELS):
        return True
    return isinstance(exc, OperationFailure) and exc.code in _TRANSIENT_CODES


def unavailable(exc: BaseException) -> ServiceUnavailable:
    """The 503 a transient failure is for the client."""
    return ServiceUnavailable(
        f"The database is unavailable for now ({type(exc).__name__}); retry after {RETRY_AFTER_SECONDS} s",
        retry_after=RETRY_AFTER_SECONDS)


def _in_transaction(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    session = kwargs.get("session") or next((a for a in args if isinstance(a, AsyncClientSession)), None)
    return isinstance(session, AsyncClientSession) and session.in_transaction


def bounded(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A store method under the store's ``timeout_seconds`` (``self.timeout_seconds``), its transient failures
    raised as ``ServiceUnavailable``, except inside a transaction: there the driver's own error is what the
    convenient-transaction API re-runs the transaction on (an outer ``bounded`` call turns what it gives up on
    into the 503). A nested call keeps the outer, earlier deadline."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        seconds = getattr(args[0], "timeout_seconds", None)
        try:
            with pymongo.timeout(seconds) if seconds else contextlib.nullcontext():
                return await method(*args, **kwargs)
        except PyMongoError as exc:
            if is_transient(exc) and not _in_transaction(args, kwargs):
                raise unavailable(exc) from exc
            raise

    return run
