"""What operators see of every HTTP request: a request id (``X-Request-Id``, in every log line of the request),
Prometheus metrics (requests by interaction, method and status; latency by interaction) and one access log line.
Also the ``Date`` of every response, taken when the response starts (RFC 9110 6.6.1): uvicorn's own is refreshed
once a second, so a response could carry a ``Date`` before the ``Last-Modified`` of the write it answers, which
RFC 9110 8.8.2.1 forbids; ``fhir-server serve`` turns uvicorn's off (``date_header=False``).

A plain ASGI middleware wrapped around the whole application, error handlers included (see
``api.app.FhirApp``), so even a 500 carries its request id and is counted. The FHIR route records the
interaction it parsed in ``scope["fhir.interaction"]`` (:data:`INTERACTION_KEY`); other routes are named by
their path's first segment from a fixed list, so that no label takes a value a client chose.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import logs, metrics

INTERACTION_KEY = "fhir.interaction"
REQUEST_ID_HEADER = b"x-request-id"
DATE_HEADER = b"date"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET = frozenset({"health", "metrics"})  # probes and scrapes every few seconds: DEBUG, not INFO
_OTHER_ROUTES = {"health": "health", "metrics": "metrics", "report": "report"}
access_log = logging.getLogger("fhir_server.access")


def interaction_of(scope: Scope) -> str:
    """The metrics label of a request: the FHIR interaction, else the kind of endpoint (never the raw path)."""
    recorded = scope.get(INTERACTION_KEY)
    if recorded:
        return str(recorded)
    path: str = scope.get("path", "")
    if path.startswith("/fhir/_export/"):
        return "export-file"
    if path == "/fhir" or path.startswith("/fhir/"):
        return "unparsed"  # refused before its interaction was known (404, 405, 406)
    return _OTHER_ROUTES.get(path.strip("/").split("/")[0], "other")


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER)
        request_id = logs.request_id(incoming.decode("latin-1") if incoming else None)
        token = logs.REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = [500]  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != DATE_HEADER]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id.encode()),
                                      (DATE_HEADER, formatdate(time.time(), usegmt=True).encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)
            logs.REQUEST_ID.reset(token)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        interaction = interaction_of(scope)
        method = scope["method"] if scope["method"] in _METHODS else "other"
        metrics.REQUESTS.labels(interaction, method, str(status)).inc()
        metrics.REQUEST_SECONDS.labels(interaction).observe(seconds)
        fields: dict[str, Any] = {"method": scope["method"], "path": scope["path"], "status": status,
                                  "interaction": interaction, "duration_ms": round(seconds * 1000, 1)}
        level = logging.DEBUG if interaction in _QUIET else logging.INFO
        access_log.log(level, "%s %s %s", scope["method"], scope["path"], status, extra=fields)
