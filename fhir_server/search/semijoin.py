"""``_has`` as a stream of the referenced ids in ascending order (https://hl7.org/fhir/R4/search.html#has).

``Patient?_has:Observation:subject:value-concept=x`` matches the Patients some matching Observation refers to.
Collecting every referenced id first (``HasJoin.referenced_ids_pipeline``) reads every matching Observation,
however few Patients a page and a budgeted total need. This module reads them in the order of the Patients
instead, so that the reader stops as soon as it has enough ids.

The order comes from the reference's scalar sort keys, stored with every resource: ``sp._sort.<code>.a`` is
the smallest ``Type/id`` of the resource's references, ``.d`` the largest (``index_layout.bounds_sort_key``).
Read in ascending ``a``, every reference of a resource is ``>= a``, so once the stream has reached ``a`` no
later resource can add a reference ``<= a``: those are final and released in order. Resources with one
reference (``a == d``, e.g. ``Observation.subject``) release it at once; those with several are held in a heap
until the stream passes them. The wanted references are the ``Target/...`` strings in ``(low, high)``:
``low`` is ``Target/`` or the ``Target/id`` a page starts after, ``high`` is ``Target0`` (``0`` follows ``/``).
A resource whose ``a`` is ``<= low`` but whose ``d`` is above (several references, straddling ``low``) is
read by a query of its own first (:func:`straddling_filter`).

The stream is read in bounded batches (``interactions/search.py``), each a query of its own (so each under the
store's deadline and inside the request's session): after a full batch ending at ``a = x``, the rest of the
resources with ``a = x`` (:func:`at_filter`), then those above ``x``. A resource read twice adds nothing: only
references above the last id released are taken.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import Any

from fhir_server.search.compile import HasJoin
from fhir_server.search.index_layout import SORT_ASCENDING, SORT_DESCENDING, sort_path
from fhir_server.search.param_types import reference

Filter = dict[str, Any]


def bounds(target_type: str, after_id: str | None) -> tuple[str, str]:
    """The exclusive ``(low, high)`` range of the ``Type/id`` references a stream wants."""
    return f"{target_type}/{after_id or ''}", f"{target_type}0"


def stream_filter(code: str, low: str, high: str) -> Filter:
    """Resources whose smallest reference lies in ``(low, high)``; read sorted by :func:`stream_sort`."""
    return {sort_path(code, SORT_ASCENDING): {"$gt": low, "$lt": high}}


def stream_sort(code: str) -> list[tuple[str, int]]:
    return [(sort_path(code, SORT_ASCENDING), 1)]


def straddling_filter(code: str, low: str) -> Filter:
    """Resources with several references, the smallest ``<= low`` and the largest above it."""
    return {sort_path(code, SORT_ASCENDING): {"$lte": low}, sort_path(code, SORT_DESCENDING): {"$gt": low}}


def at_filter(code: str, smallest: str) -> Filter:
    """Resources whose smallest reference is ``smallest`` (the rest of a batch that stopped among them)."""
    return {sort_path(code, SORT_ASCENDING): smallest}


def smallest(code: str, doc: Mapping[str, Any]) -> str | None:
    return _sort_key(code, doc, SORT_ASCENDING)


def largest(code: str, doc: Mapping[str, Any]) -> str | None:
    return _sort_key(code, doc, SORT_DESCENDING)


def _sort_key(code: str, doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get("sp", {}).get("_sort", {}).get(code, {}).get(key)
    return value if isinstance(value, str) else None


def projection(code: str) -> dict[str, int]:
    return {"_id": 0, f"sp.{code}": 1, sort_path(code, SORT_ASCENDING): 1, sort_path(code, SORT_DESCENDING): 1}


class AscendingIds:
    """Turns the resources of a stream (ascending ``a``) into the distinct ids they refer to, ascending."""

    def __init__(self, join: HasJoin, low: str, high: str) -> None:
        self.join = join
        self.low = low
        self.high = high
        self._pending: list[str] = []  # a heap of wanted references not yet final
        self._last: str | None = None

    def hold(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Add the references of resources read before the stream (:func:`straddling_filter`)."""
        for doc in docs:
            self._add(doc)

    def add(self, doc: Mapping[str, Any]) -> list[str]:
        """Add a resource of the stream; the ids that are final now, ascending."""
        first = smallest(self.join.source_code, doc) or ""
        if not self._pending and first == largest(self.join.source_code, doc):
            # one reference (the common case: a single-valued parameter): final at once, no heap
            if self.low < first < self.high and (self._last is None or first > self._last):
                self._last = first
                return [first.partition("/")[2]]
            return []
        self._add(doc)
        return self._release(first)

    def rest(self) -> list[str]:
        """The stream has ended: every id still held, ascending."""
        return self._release(None)

    def _add(self, doc: Mapping[str, Any]) -> None:
        for entry in doc.get("sp", {}).get(self.join.source_code, ()):
            found = reference.target(entry)
            if found is not None and found[0] == self.join.target_type:
                ref = f"{found[0]}/{found[1]}"
                if self.low < ref < self.high and (self._last is None or ref > self._last):
                    heapq.heappush(self._pending, ref)

    def _release(self, upto: str | None) -> list[str]:
        ids: list[str] = []
        while self._pending and (upto is None or self._pending[0] <= upto):
            ref = heapq.heappop(self._pending)
            if ref != self._last:
                self._last = ref
                ids.append(ref.partition("/")[2])
        return ids
