"""The registry report grows linearly with the registry (issue #14 item 4, bench/README.md "The registry report
at scale"): its aggregation runs no sub-query per patient. A correlated ``$lookup`` (``localField`` or ``let``)
runs its pipeline once per input document, and its fixed cost was most of the report's time at 10,000 patients
and more; an uncorrelated one runs once and is cached. Pure: the pipeline's shape, no database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.reports.model import Filters
from fhir_server.reports.pipeline import report_pipeline
from fhir_server.reports.terminology import DEFAULT_CODES


def lookups(pipeline: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every ``$lookup`` spec of a pipeline, inside ``$unionWith``, ``$lookup`` and ``$facet`` pipelines too."""
    for stage in pipeline:
        ((name, spec),) = stage.items()
        if name == "$lookup":
            yield spec
        if name in ("$lookup", "$unionWith") and isinstance(spec, dict):
            yield from lookups(spec.get("pipeline", []))
        if name == "$facet":
            for sub in spec.values():
                yield from lookups(sub)


def test_the_report_pipeline_runs_no_sub_query_per_patient() -> None:
    for filters in (Filters(), Filters(countries=frozenset({"FR"}), centers=frozenset({"FR-POI"}))):
        found = list(lookups(report_pipeline(filters, DEFAULT_CODES)))
        assert found, "the center Organizations are read by a $lookup"
        for spec in found:
            assert not {"localField", "foreignField", "let"} & set(spec), spec
