"""What a hospital's EHR does, and what the suite checks afterwards.

The load: registry patients as transaction Bundles (``tests.synthetic``, every entry a conditional create),
posted by concurrent clients that retry, like a careful EHR, until the Bundle is accepted: after a 503 (waiting
``Retry-After``), a 5xx, a dropped connection or a refused one. A client waits at most ``REQUEST_TIMEOUT`` for an
answer (an EHR's usual 60 s): a server that takes longer counts as hung.

The read-back, Bundle by Bundle, over HTTP: every entry is found by its identifier exactly once (none: absent;
several: duplicates) and every reference it made to another entry (the patient, the center) names the resource
stored for that entry. A Bundle is complete (every entry), absent (none) or partial (some: a transaction split).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from fhir_server import fhirjson
from tests.synthetic import registry_bundle

REQUEST_TIMEOUT = 60.0
FHIR_JSON = "application/fhir+json"


def bundles(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [registry_bundle(index, rng)[0] for index in range(1, count + 1)]


@dataclass
class Tally:
    """What the clients saw."""

    answers: Counter[str] = field(default_factory=Counter)  # status codes and transport errors, every attempt
    accepted: int = 0
    rejected: list[str] = field(default_factory=list)  # 4xx: the Bundle itself was refused
    hung: int = 0  # no answer within REQUEST_TIMEOUT
    longest_retry: float = 0.0  # seconds from a Bundle's first failed attempt to its acceptance
    retried: list[tuple[float, float]] = field(default_factory=list)  # (first failure, acceptance), monotonic

    def add(self, other: Tally) -> None:
        self.answers.update(other.answers)
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.hung += other.hung
        self.longest_retry = max(self.longest_retry, other.longest_retry)
        self.retried += other.retried

    @property
    def server_errors(self) -> int:
        """5xx other than 503: a fault must never be a 500."""
        return sum(n for answer, n in self.answers.items() if answer.isdigit() and answer[0] == "5" and answer != "503")


class Client:
    """Concurrent EHR clients posting Bundles until each is accepted (or ``give_up_after`` seconds)."""

    def __init__(self, base: str, *, clients: int, give_up_after: float = 300.0) -> None:
        self.base = base
        self.clients = clients
        self.give_up_after = give_up_after
        self.tally = Tally()

    async def submit_all(self, items: list[dict[str, Any]]) -> Tally:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for item in items:
            queue.put_nowait(fhirjson.dumps(item))
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as http:
            async def worker() -> None:
                while not queue.empty():
                    await self.submit(http, queue.get_nowait())
            await asyncio.gather(*[worker() for _ in range(self.clients)])
        return self.tally

    async def submit(self, http: httpx.AsyncClient, payload: bytes) -> None:
        started = time.monotonic()
        first_failure: float | None = None
        pause = 0.2
        while time.monotonic() - started < self.give_up_after:
            answer, retry_after = await self._post(http, payload)
            self.tally.answers[answer] += 1
            if answer in ("200", "201"):
                self.tally.accepted += 1
                if first_failure is not None:
                    self.tally.longest_retry = max(self.tally.longest_retry, time.monotonic() - first_failure)
                    self.tally.retried.append((first_failure, time.monotonic()))
                return
            if answer.isdigit() and answer[0] == "4":
                self.tally.rejected.append(answer)
                return
            first_failure = first_failure or time.monotonic()
            await asyncio.sleep(retry_after if retry_after is not None else pause)
            pause = min(pause * 2, 2.0)
        self.tally.rejected.append("gave up")

    async def _post(self, http: httpx.AsyncClient, payload: bytes) -> tuple[str, float | None]:
        try:
            r = await http.post(self.base, content=payload, headers={"Content-Type": FHIR_JSON})
        except httpx.TimeoutException:
            self.tally.hung += 1
            return "timeout", None
        except httpx.TransportError as exc:
            return type(exc).__name__, None
        retry_after = r.headers.get("Retry-After")
        return str(r.status_code), float(retry_after) if retry_after and retry_after.isdigit() else None


async def when(condition: Callable[[], bool], action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` once ``condition`` holds (a fault injected mid-ingest)."""
    while not condition():
        await asyncio.sleep(0.05)
    await action()


@dataclass
class ReadBack:
    complete: int = 0
    absent: int = 0
    partial: int = 0
    duplicates: int = 0
    wrong_references: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not (self.absent or self.partial or self.duplicates or self.wrong_references)


def _identifier(resource: dict[str, Any]) -> str:
    first = resource["identifier"][0]
    return f"{first['system']}|{first['value']}"


def _references(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, reference) of every Reference.reference in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield (*path, key), item
            else:
                yield from _references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, (*path, index))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


async def read_back(base: str, items: list[dict[str, Any]], http: httpx.AsyncClient | None = None) -> ReadBack:
    """Each Bundle of ``items`` as the server at ``base`` holds it now (see the module docstring), read with
    ``http`` when given."""
    result = ReadBack()
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=REQUEST_TIMEOUT))
        for number, bundle in enumerate(items):
            await _read_bundle(http, base, number, bundle, result)
    return result


async def _read_bundle(http: httpx.AsyncClient, base: str, number: int, bundle: dict[str, Any],
                       result: ReadBack) -> None:
    entries = [e["resource"] for e in bundle["entry"]]
    by_type: dict[str, list[str]] = {}
    for resource in entries:
        by_type.setdefault(resource["resourceType"], []).append(_identifier(resource))
    stored: dict[str, list[dict[str, Any]]] = {}
    for resource_type, identifiers in by_type.items():
        r = await http.get(f"{base}/{resource_type}", params={"identifier": ",".join(identifiers), "_count": "500"})
        r.raise_for_status()
        for entry in fhirjson.loads(r.content).get("entry", []):
            stored.setdefault(_identifier(entry["resource"]), []).append(entry["resource"])
    found = [stored.get(_identifier(resource), []) for resource in entries]
    present = sum(1 for copies in found if copies)
    if present == len(entries):
        result.complete += 1
    elif present == 0:
        result.absent += 1
        result.problems.append(f"Bundle {number}: absent")
    else:
        result.partial += 1
        result.problems.append(f"Bundle {number}: partial ({present} of {len(entries)} entries)")
    duplicated = [_identifier(r) for r, copies in zip(entries, found, strict=True) if len(copies) > 1]
    result.duplicates += len(duplicated)
    result.problems += [f"Bundle {number}: {identifier} stored more than once" for identifier in duplicated]
    _check_references(bundle, stored, number, result)


def _check_references(bundle: dict[str, Any], stored: dict[str, list[dict[str, Any]]], number: int,
                      result: ReadBack) -> None:
    """Every reference to another entry names the resource stored for that entry (the right patient)."""
    stored_at = {}
    for entry in bundle["entry"]:
        copies = stored.get(_identifier(entry["resource"]), [])
        if copies:
            stored_at[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{copies[0]['id']}"
    for entry in bundle["entry"]:
        copies = stored.get(_identifier(entry["resource"]), [])
        if not copies:
            continue
        for path, reference in _references(entry["resource"]):
            expected = stored_at.get(reference)
            if expected is not None and _at(copies[0], path) != expected:
                result.wrong_references += 1
                result.problems.append(f"Bundle {number}: {_identifier(entry['resource'])} {'.'.join(map(str, path))}"
                                       f" is {_at(copies[0], path)}, not {expected}")
