"""Prometheus metrics of the server (https://prometheus.io/docs/practices/naming/), served at ``/metrics``.

The metric objects live here, at a low layer, so that any layer can count what it sees without knowing HTTP:
the request middleware (``api/observability.py``) counts requests by interaction and status and times them,
``storage/`` counts transaction retries and write conflicts through :func:`transaction_retried` and
:func:`write_conflict`, the bulk export counts its jobs through :func:`export_job`.

Several uvicorn workers are separate processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (``fhir-server serve``
sets it for ``--workers`` > 1), prometheus-client keeps every process's values in files there and
:func:`exposition` adds them up (https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
EXPOSITION_MEDIA_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter("fhir_requests", "HTTP requests by FHIR interaction, method and response status",
                   ["interaction", "method", "status"])
# Buckets from 2.5 ms (a read) to 60 s (a big transaction Bundle under contention).
REQUEST_SECONDS = Histogram("fhir_request_duration_seconds", "HTTP request latency by FHIR interaction",
                            ["interaction"],
                            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
TRANSACTION_RETRIES = Counter("fhir_transaction_retries", "MongoDB transactions re-run after a transient error")
WRITE_CONFLICTS = Counter("fhir_write_conflicts", "MongoDB write conflicts inside transactions (each re-runs it)")
EXPORT_JOBS = Counter("fhir_export_jobs", "Bulk export job events: started, completed, failed, cancelled, "
                      "taken-over (resumed by another process after its own died)", ["event"])


def transaction_retried() -> None:
    TRANSACTION_RETRIES.inc()


def write_conflict() -> None:
    WRITE_CONFLICTS.inc()


def export_job(event: str) -> None:
    EXPORT_JOBS.labels(event).inc()


def exposition() -> bytes:
    """The text exposition of every metric, summed over the worker processes in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()

