"""Aggregations that cannot forget the access checkpoint.

``ResourceStore.aggregate`` does not run the pipeline it is given: it runs :func:`guarded` of it, which puts the
access filter (``AccessPolicy.read_filter``, see ``storage/access.py``) in front of every read of a collection:

* the collection aggregated: a first ``$match``;
* ``$lookup`` and ``$unionWith``: a first ``$match`` of their pipeline (a ``$lookup`` written with
  ``localField``/``foreignField`` only gets a pipeline; MongoDB 5.0+ runs both together);
* ``$graphLookup``: its ``restrictSearchWithMatch``;
* recursively, inside those pipelines and inside every ``$facet``.

A resource collection (named after its type) is filtered by the type's access filter and never yields deleted
tombstones; the report's rows (``storage/report_rows.py``) are filtered as their Patients are. A read of
``history`` must say which types it reads by a first ``$match`` on ``type`` (a string, ``$eq`` or ``$in``), so
that each type's filter applies. Anything else fails closed: a stage this module does
not know (``$out``, ``$merge``, ``$collStats``...), a read of another collection (claims, counters, jobs), a
read of history that does not pin its types raises :class:`UnguardedRead` before MongoDB is asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.storage.access import restrict
from fhir_server.storage.documents import HISTORY, NOT_DELETED, REPORT_ROWS

Stage = dict[str, Any]
Filter = dict[str, Any]

# Stages that read nothing but their input documents.
PASS_THROUGH = frozenset({
    "$match", "$project", "$set", "$addFields", "$unset", "$group", "$sort", "$limit", "$skip", "$unwind",
    "$count", "$replaceRoot", "$replaceWith", "$bucket", "$bucketAuto", "$sortByCount", "$sample", "$redact",
    "$densify", "$fill", "$setWindowFields", "$documents",
})
RESOURCE_COLLECTION = re.compile(r"^[A-Z][A-Za-z]*$")  # resource types are capitalised; storage's own are not


class UnguardedRead(ValueError):
    """A pipeline reads something the access filter cannot be applied to: refused, never run unfiltered."""


@dataclass(frozen=True)
class ReadFilters:
    """The access filter of one caller, per resource type (``AccessPolicy.read_filter`` bound to a context)."""

    access: Callable[[str], Filter]
    rows: Filter | None = None  # of the report's rows (``AccessPolicy.rows_filter``); None: they may not be read

    def of(self, collection: str, pinned: Filter | None) -> Filter:
        """The match for documents read from ``collection``; ``pinned``: the read's own first match (history)."""
        if collection == HISTORY:
            return self.history(_pinned_types(pinned))
        if collection == REPORT_ROWS:  # a patient's row carries its Patient's center: read as the Patient is
            if self.rows is None:
                raise UnguardedRead("The report's rows cannot be filtered for this caller")
            return self.rows
        if not RESOURCE_COLLECTION.match(collection):
            raise UnguardedRead(f"An aggregation may not read the collection {collection!r}")
        return restrict(dict(NOT_DELETED), self.access(collection))

    def history(self, types: Sequence[str]) -> Filter:
        terms = [restrict({"type": kind}, self.access(kind)) for kind in types]
        return terms[0] if len(terms) == 1 else {"$or": terms}


def guarded(collection: str, pipeline: Sequence[Stage], filters: ReadFilters) -> list[Stage]:
    """``pipeline`` as run on ``collection``: the access filter in front of every read (see the module)."""
    return [{"$match": filters.of(collection, _first_match(pipeline))}, *_stages(pipeline, filters)]


def guarded_documents(pipeline: Sequence[Stage], filters: ReadFilters) -> list[Stage]:
    """A database-level ``pipeline`` (it starts with ``$documents``, reading no collection itself) with the access
    filter in front of every collection its stages read."""
    if not pipeline or "$documents" not in pipeline[0]:
        raise UnguardedRead("A database-level aggregation starts with $documents")
    return _stages(pipeline, filters)


def _stages(pipeline: Sequence[Stage], filters: ReadFilters) -> list[Stage]:
    return [_stage(stage, filters) for stage in pipeline]


def _stage(stage: Stage, filters: ReadFilters) -> Stage:
    if len(stage) != 1:
        raise UnguardedRead(f"A pipeline stage has exactly one operator: {sorted(stage)}")
    ((name, spec),) = stage.items()
    if name in PASS_THROUGH:
        return stage
    guard = _READERS.get(name)
    if guard is None:
        raise UnguardedRead(f"The aggregation stage {name} is not known to apply the access filter")
    return {name: guard(spec, filters)}


def _lookup(spec: dict[str, Any], filters: ReadFilters) -> dict[str, Any]:
    return _with_pipeline(spec, "from", filters)


def _union_with(spec: str | dict[str, Any], filters: ReadFilters) -> dict[str, Any]:
    return _with_pipeline({"coll": spec} if isinstance(spec, str) else spec, "coll", filters)


def _with_pipeline(spec: dict[str, Any], source_key: str, filters: ReadFilters) -> dict[str, Any]:
    """A ``$lookup``/``$unionWith`` whose pipeline starts with the access filter of the collection it reads; one
    without a collection (a pipeline starting with ``$documents``) only has its pipeline guarded."""
    source = spec.get(source_key)
    inner = spec.get("pipeline", [])
    if source is None:
        return {**spec, "pipeline": _stages(inner, filters)}
    if not isinstance(source, str):
        raise UnguardedRead(f"An aggregation may only read a collection of this database, not {source!r}")
    return {**spec, "pipeline": guarded(source, inner, filters)}


def _graph_lookup(spec: dict[str, Any], filters: ReadFilters) -> dict[str, Any]:
    source = spec.get("from")
    if not isinstance(source, str):
        raise UnguardedRead(f"$graphLookup reads a collection of this database, not {source!r}")
    own = spec.get("restrictSearchWithMatch") or {}
    return {**spec, "restrictSearchWithMatch": restrict(filters.of(source, own), own)}


def _facet(spec: dict[str, list[Stage]], filters: ReadFilters) -> dict[str, list[Stage]]:
    return {name: _stages(sub, filters) for name, sub in spec.items()}


_READERS: dict[str, Callable[[Any, ReadFilters], Any]] = {
    "$lookup": _lookup, "$unionWith": _union_with, "$graphLookup": _graph_lookup, "$facet": _facet,
}


def _first_match(pipeline: Sequence[Stage]) -> Filter | None:
    first = pipeline[0] if pipeline else {}
    return first.get("$match") if isinstance(first, dict) else None


def _pinned_types(match: Filter | None) -> list[str]:
    """The resource types a read of history names in its own first match (``type``: a string, ``$eq``, ``$in``)."""
    value = (match or {}).get("type")
    if isinstance(value, dict) and set(value) == {"$eq"}:
        value = value["$eq"]
    if isinstance(value, dict) and set(value) == {"$in"}:
        value = value["$in"]
    types = [value] if isinstance(value, str) else value
    if not types or not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise UnguardedRead("A read of history must first $match the resource types it reads")
    return types
