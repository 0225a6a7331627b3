"""What operators rely on: liveness and readiness probes, Prometheus metrics, a request id in every response
and log line, JSON logs."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pymongo.errors import OperationFailure

from fhir_server import logs
from fhir_server.api.app import create_app
from fhir_server.services import Services
from fhir_server.storage.store import ResourceStore
from tests.conftest import FHIR_JSON, patient, post, unique


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",  # type: ignore[arg-type]
                             headers={"Accept": FHIR_JSON})


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- probes ----------------------------------------------------------------------------------------------------


async def test_live_and_ready_answer_200_when_mongodb_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "mongodb": "ok"}


async def test_ready_is_503_before_start_up_is_done(services: Services) -> None:
    async with _client(create_app(services.settings)) as client:  # lifespan not run: nothing started
        response = await client.get("/health/ready")
        assert (await client.get("/health/live")).status_code == 200
    assert response.status_code == 503 and response.headers["retry-after"]


async def test_ready_is_503_when_mongodb_is_unreachable(services: Services) -> None:
    unreachable = ResourceStore.open("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300", "nowhere")
    try:
        async with _client(create_app(services.settings, dataclasses.replace(services, store=unreachable))) as c:
            response = await c.get("/health/ready")
    finally:
        await unreachable.close()
    assert response.status_code == 503
    assert "MongoDB unreachable" in response.json()["reason"]


# -- request id ------------------------------------------------------------------------------------------------


async def test_every_response_carries_a_new_request_id(client: httpx.AsyncClient) -> None:
    first, second = (await client.get("/fhir/metadata")), (await client.get("/fhir/Patient/nope"))
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert second.status_code == 404 and first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_well_formed_incoming_request_id_is_kept_and_a_malformed_one_replaced(
        client: httpx.AsyncClient) -> None:
    kept = await client.get("/fhir/metadata", headers={"X-Request-Id": "lb-7f3a.42:9"})
    assert kept.headers["x-request-id"] == "lb-7f3a.42:9"
    for bad in ("has space", "x" * 200, "\"quoted\""):
        replaced = await client.get("/fhir/metadata", headers={"X-Request-Id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The server's log lines as its handler writes them (JSON, with the request id)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.RequestIdFilter())
    logger = logging.getLogger("fhir_server")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_log_lines_are_json_with_the_request_id_the_response_returns(
        client: httpx.AsyncClient, json_log: io.StringIO) -> None:
    response = await client.get("/fhir/Patient?_count=1", headers={"X-Request-Id": "req-123"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "fhir_server.access"]
    assert response.headers["x-request-id"] == "req-123"
    assert access[-1]["request_id"] == "req-123"
    assert (access[-1]["interaction"], access[-1]["status"], access[-1]["level"]) == ("search-type", 200, "INFO")


# -- metrics ---------------------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_interaction_and_status_and_time_them(client: httpx.AsyncClient) -> None:
    labels = {"interaction": "create", "method": "POST", "status": "201"}
    before = _sample("fhir_requests_total", labels), _sample("fhir_request_duration_seconds_count",
                                                             {"interaction": "create"})
    assert (await post(client, "Patient", patient(unique("M-")))).status_code == 201
    assert (await client.get("/fhir/Patient/does-not-exist")).status_code == 404
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = {tuple(sorted(s.labels.items())): s.value for s in families["fhir_requests"].samples
                if s.name == "fhir_requests_total"}
    assert requests[tuple(sorted(labels.items()))] == before[0] + 1
    assert requests[(("interaction", "read"), ("method", "GET"), ("status", "404"))] >= 1
    assert _sample("fhir_request_duration_seconds_count", {"interaction": "create"}) == before[1] + 1
    assert {"fhir_transaction_retries", "fhir_write_conflicts", "fhir_export_jobs"} <= set(families)


async def test_transaction_retries_and_write_conflicts_are_counted(services: Services) -> None:
    before = _sample("fhir_transaction_retries_total", {}), _sample("fhir_write_conflicts_total", {})
    runs = []

    async def conflicts_once(session: object) -> str:
        runs.append(session)
        if len(runs) == 1:  # what MongoDB answers a transaction that lost a race for a document
            raise OperationFailure("WriteConflict", code=112, details={
                "errmsg": "WriteConflict", "code": 112, "errorLabels": ["TransientTransactionError"]})
        return "committed"

    assert await services.store.run_transaction(conflicts_once) == "committed"
    assert len(runs) == 2
    assert _sample("fhir_transaction_retries_total", {}) == before[0] + 1
    assert _sample("fhir_write_conflicts_total", {}) == before[1] + 1
