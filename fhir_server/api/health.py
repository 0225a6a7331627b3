"""Probes and metrics for operators (not FHIR: plain JSON and the Prometheus text format).

* ``GET /health/live``: 200 while the process serves requests at all (a liveness probe restarts it otherwise).
* ``GET /health/ready``: 200 once start-up is done (indexes, profiles) and MongoDB answers a ping within
  ``READY_TIMEOUT_SECONDS``; 503 with ``Retry-After`` otherwise (starting, shutting down, database unreachable),
  so that a load balancer sends requests to the other nodes meanwhile.
* ``GET /metrics``: Prometheus metrics (``fhir_server.metrics``), of every worker process.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhir_server import metrics
from fhir_server.services import Services

router = APIRouter()
READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = "5"
log = logging.getLogger(__name__)


@router.get("/health/live")
async def live() -> Response:
    return JSONResponse({"status": "live"})


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not getattr(request.app.state, "ready", False):
        return _not_ready("starting or stopping")
    try:
        await asyncio.wait_for(services.store.ping(), READY_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to reach MongoDB means: not ready
        log.warning("readiness: MongoDB did not answer: %s", type(exc).__name__)
        return _not_ready(f"MongoDB unreachable ({type(exc).__name__})")
    return JSONResponse({"status": "ready", "mongodb": "ok"})


def _not_ready(reason: str) -> Response:
    return JSONResponse({"status": "not-ready", "reason": reason}, status_code=503,
                        headers={"Retry-After": RETRY_AFTER_SECONDS})


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=metrics.EXPOSITION_MEDIA_TYPE)
