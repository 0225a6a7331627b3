"""Logging of a server process: one JSON object per line (python-json-logger), each carrying the id of the
request it belongs to.

The request middleware (``api/observability.py``) sets :data:`REQUEST_ID` for the duration of a request; the
filter copies it into every record logged meanwhile, from any module (``request_id`` is absent outside a
request). ``FHIR_LOG_FORMAT=text`` gives classic one-line text logs instead (a developer's terminal).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# What an incoming X-Request-Id may be to be kept as is: what proxies and tracing systems generate (UUIDs,
# hex, base64url, dotted/colon-separated ids), never something that could split a log line or a header.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}$")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = ("asctime", "levelname", "name", "message")


def request_id(incoming: str | None) -> str:
    """The id of a request: the client's (or proxy's) own when well-formed, else a new one."""
    if incoming and _WELL_FORMED.match(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is being served (and drops uvicorn's terminal
    colouring copy of the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        current = REQUEST_ID.get()
        if current is not None:
            record.request_id = current
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(list(_JSON_FIELDS), rename_fields={"asctime": "time", "levelname": "level",
                                                            "name": "logger"})


def configure(level: str = "INFO", log_format: str = "json") -> None:
    """Send every logger's records (uvicorn's included) to stderr as JSON (or text), with the request id."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would bypass ours
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")  # fhir_server.access logs each request, with more
    access.handlers.clear()
    access.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)
