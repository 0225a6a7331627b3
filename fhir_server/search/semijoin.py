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
store's deadline and inside the request's session): after a full batch ending at ``a = x``, the resources above
``x`` and those at ``x`` with a larger reference (:func:`resume_filter`); should a whole batch be such resources
at one ``x``, all of them (:func:`at_filter`), then those above ``x``. A resource read twice adds nothing: only
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
    """Resources whose smallest reference lies in ``(low, high)`` (read in ascending ``a``)."""
    return {sort_path(code, SORT_ASCENDING): {"$gt": low, "$lt": high}}


def straddling_filter(code: str, low: str) -> Filter:
    """Resources with several references, the smallest ``<= low`` and the largest above it."""
    return {sort_path(code, SORT_ASCENDING): {"$lte": low}, sort_path(code, SORT_DESCENDING): {"$gt": low}}


def resume_filter(code: str, last: str, high: str) -> Filter:
    """After a full batch whose last resource's smallest reference is ``last``: the resources above it and those
    at it with a larger reference too (the batch released ``last``, so those with ``last`` alone add nothing)."""
    return {"$or": [stream_filter(code, last, high), at_filter(code, last)]}


def at_filter(code: str, last: str) -> Filter:
    """Resources whose smallest reference is ``last`` and which have a larger one."""
    return {sort_path(code, SORT_ASCENDING): last, sort_path(code, SORT_DESCENDING): {"$gt": last}}


def items_pipeline(code: str, condition: Filter, limit: int) -> list[Filter]:
    """The resources matching ``condition`` in ascending ``a`` (at most ``limit``; 0: all) as one row
    ``{"items": [...]}`` (no row when none matches): per resource its one reference when ``a == d``, else
    ``{"a": smallest, "e": its entries}``. One row of strings costs the server a fraction of decoding a
    document per resource (measured: bench/README.md, "`_has` at scale")."""
    low, high = f"${sort_path(code, SORT_ASCENDING)}", f"${sort_path(code, SORT_DESCENDING)}"
    item = {"$cond": [{"$eq": [low, high]}, low, {"a": low, "e": f"$sp.{code}"}]}
    return [{"$match": condition}, {"$sort": {sort_path(code, SORT_ASCENDING): 1}},
            *([{"$limit": limit}] if limit else []),
            {"$group": {"_id": None, "items": {"$push": item}}}]


Item = str | Mapping[str, Any]  # an element of ``items_pipeline``'s row


def smallest(item: Item) -> str:
    return item if isinstance(item, str) else str(item["a"])


class AscendingIds:
    """Turns the resources of a stream (ascending ``a``) into the distinct ids they refer to, ascending."""

    def __init__(self, join: HasJoin, low: str, high: str) -> None:
        self.join = join
        self.low = low
        self.high = high
        self._pending: list[str] = []  # a heap of wanted references not yet final
        self._last: str | None = None

    def hold(self, items: Iterable[Item]) -> None:
        """Add the references of resources read before the stream (:func:`straddling_filter`)."""
        for item in items:
            self._add(item)

    def add(self, item: Item) -> list[str]:
        """Add a resource of the stream; the ids that are final now, ascending."""
        if isinstance(item, str) and not self._pending:
            # one reference (the common case: a single-valued parameter): final at once, no heap
            if self._wanted(item):
                self._last = item
                return [item.partition("/")[2]]
            return []
        self._add(item)
        return self._release(smallest(item))

    def rest(self) -> list[str]:
        """The stream has ended: every id still held, ascending."""
        return self._release(None)

    def _wanted(self, ref: str) -> bool:
        return self.low < ref < self.high and (self._last is None or ref > self._last)

    def _add(self, item: Item) -> None:
        if isinstance(item, str):
            refs = [item]
        else:
            targets = (reference.target(entry) for entry in item.get("e", ()))
            refs = [f"{t[0]}/{t[1]}" for t in targets if t is not None and t[0] == self.join.target_type]
        for ref in refs:
            if self._wanted(ref):
                heapq.heappush(self._pending, ref)

    def _release(self, upto: str | None) -> list[str]:
        ids: list[str] = []
        while self._pending and (upto is None or self._pending[0] <= upto):
            ref = heapq.heappop(self._pending)
            if ref != self._last:
                self._last = ref
                ids.append(ref.partition("/")[2])
        return ids
