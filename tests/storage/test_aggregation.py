"""Aggregations cannot forget the access checkpoint (``fhir_server/storage/aggregation.py``): whatever pipeline a
module hands to ``ResourceStore.aggregate``, every collection it reads is read through ``AccessPolicy.read_filter``,
and a read that cannot be filtered is refused before MongoDB is asked. Pure: no database needed (the same rules
over MongoDB: ``tests/api/test_access_checkpoint.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_server.reports.model import Filters
from fhir_server.reports.pipeline import report_pipeline
from fhir_server.reports.terminology import DEFAULT_CODES
from fhir_server.search.compile import HasJoin, compile_search
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage.aggregation import ReadFilters, UnguardedRead, guarded
from fhir_server.storage.documents import HISTORY
from fhir_server.storage.store import ResourceStore

HIDE_RESTRICTED = {"resource.meta.security.code": {"$ne": "R"}}
FILTERS = ReadFilters(lambda _resource_type: dict(HIDE_RESTRICTED))
CURRENT = {"$and": [{"deleted": False}, HIDE_RESTRICTED]}  # a current resource the caller may read


def history_of(resource_type: str) -> dict[str, Any]:
    return {"$and": [{"type": resource_type}, HIDE_RESTRICTED]}


def reads(pipeline: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Every collection a (guarded) pipeline reads, with the filter applied before anything else of that read:
    the first ``$match`` of a ``$lookup``/``$unionWith`` pipeline, ``restrictSearchWithMatch`` of a
    ``$graphLookup``; recursively, ``$facet`` included."""
    for stage in pipeline:
        ((name, spec),) = stage.items()
        if name == "$unionWith" and isinstance(spec, str):
            yield spec, None
        elif name in ("$lookup", "$unionWith"):
            inner = spec.get("pipeline") or [{}]
            yield spec.get("from") or spec.get("coll"), inner[0].get("$match")
            yield from reads(inner)
        elif name == "$graphLookup":
            yield spec["from"], spec.get("restrictSearchWithMatch")
        elif name == "$facet":
            for sub in spec.values():
                yield from reads(sub)


def test_the_aggregated_collection_is_read_through_the_access_filter() -> None:
    assert guarded("Patient", [{"$count": "n"}], FILTERS) == [{"$match": CURRENT}, {"$count": "n"}]


def test_a_lookup_written_without_a_filter_gets_the_access_filter() -> None:
    lookup = {"$lookup": {"from": "Organization", "localField": "org", "foreignField": "_id", "as": "center"}}
    pipeline = guarded("Patient", [lookup], FILTERS)
    assert pipeline[1] == {"$lookup": {**lookup["$lookup"], "pipeline": [{"$match": CURRENT}]}}


def test_a_lookup_with_its_own_pipeline_gets_the_filter_first() -> None:
    own = [{"$match": {"$expr": {"$eq": ["$_id", "$$org"]}}}, {"$project": {"resource": 1}}]
    lookup = {"$lookup": {"from": "Organization", "let": {"org": "$org"}, "pipeline": own, "as": "center"}}
    assert guarded("Patient", [lookup], FILTERS)[1]["$lookup"]["pipeline"] == [{"$match": CURRENT}, *own]


def test_union_with_graph_lookup_and_nested_reads_are_filtered() -> None:
    pipeline = [
        {"$unionWith": "Condition"},
        {"$unionWith": {"coll": "Observation", "pipeline": [
            {"$lookup": {"from": "Patient", "localField": "pid", "foreignField": "_id", "as": "p"}}]}},
        {"$graphLookup": {"from": "Organization", "startWith": "$org", "connectFromField": "partOf",
                          "connectToField": "_id", "as": "chain", "restrictSearchWithMatch": {"active": True}}},
        {"$facet": {"members": [{"$lookup": {"from": "Group", "localField": "_id", "foreignField": "m",
                                             "as": "groups"}}]}},
    ]
    found = list(reads(guarded("Patient", pipeline, FILTERS)))
    assert [collection for collection, _ in found] == ["Condition", "Observation", "Patient", "Organization",
                                                       "Group"]
    for collection, restriction in found:
        if collection == "Organization":
            assert restriction == {"$and": [CURRENT, {"active": True}]}
        else:
            assert restriction == CURRENT, collection


def test_a_read_of_history_is_filtered_per_type_it_names() -> None:
    lookup = {"$lookup": {"from": HISTORY, "localField": "k", "foreignField": "_id", "as": "v", "pipeline": [
        {"$match": {"type": {"$in": ["Patient", "Observation"]}}}]}}
    ((collection, restriction),) = reads(guarded("Patient", [lookup], FILTERS))
    assert collection == HISTORY
    assert restriction == {"$or": [history_of("Patient"), history_of("Observation")]}


@pytest.mark.parametrize("stage", [
    {"$lookup": {"from": HISTORY, "localField": "k", "foreignField": "_id", "as": "v"}},  # which types?
    {"$lookup": {"from": "conditional_claims", "localField": "k", "foreignField": "_id", "as": "v"}},
    {"$lookup": {"from": {"db": "other", "coll": "Patient"}, "localField": "k", "foreignField": "_id", "as": "v"}},
    {"$unionWith": "counters"},
    {"$unionWith": {"coll": "jobs", "pipeline": []}},
    {"$graphLookup": {"from": HISTORY, "startWith": "$k", "connectFromField": "a", "connectToField": "b",
                      "as": "v"}},
    {"$facet": {"x": [{"$lookup": {"from": "jobs", "localField": "k", "foreignField": "_id", "as": "v"}}]}},
    {"$out": "Patient"},
    {"$merge": {"into": "Patient"}},
    {"$collStats": {}},
], ids=["history-without-type", "claims", "other-database", "counters", "jobs", "graph-history", "facet-jobs",
        "out", "merge", "collStats"])
def test_a_read_the_filter_cannot_reach_is_refused(stage: dict[str, Any]) -> None:
    with pytest.raises(UnguardedRead):
        guarded("Patient", [stage], FILTERS)


def test_every_read_of_the_registry_report_is_filtered() -> None:
    pipeline = guarded("Patient", report_pipeline(Filters(), DEFAULT_CODES), FILTERS)
    assert pipeline[0] == {"$match": CURRENT}
    found = dict(reads(pipeline))
    assert set(found) == {"Observation", "Condition", "MedicationStatement", HISTORY, "Organization"}
    for collection, restriction in found.items():
        assert restriction == (history_of("Patient") if collection == HISTORY else CURRENT), collection


def test_the_first_version_lookup_reads_only_what_the_caller_may_read_of_its_type() -> None:
    stages = ResourceStore.first_version_lookup("Patient", "undated", "firstStored")
    assert dict(reads(guarded("Patient", stages, FILTERS))) == {HISTORY: history_of("Patient")}


def test_the_has_join_reads_its_source_through_the_filter() -> None:
    registry = SearchParameterRegistry.load_default()
    parsed = parse_search(registry, "Patient", [("_has:Observation:subject:code", "1234-5")], strict=True,
                          base_url="http://x/fhir")
    (has,) = compile_search(parsed).has
    assert isinstance(has, HasJoin)
    pipeline = guarded(has.source_type, has.referenced_ids_pipeline({"sp.code.c": "1234-5"}), FILTERS)
    assert pipeline[0] == {"$match": CURRENT} and not list(reads(pipeline))


def test_the_first_versions_union_reads_only_what_the_caller_may_read_of_its_type() -> None:
    stage = ResourceStore.first_versions("Patient", "pid", "firstStored")
    assert dict(reads(guarded("Patient", [stage], FILTERS))) == {HISTORY: history_of("Patient")}
