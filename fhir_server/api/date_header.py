"""The ``Date`` header of every response, taken when the response starts (RFC 9110 6.6.1).

uvicorn's own ``Date`` is refreshed once a second, so a response could carry a ``Date`` before the
``Last-Modified`` of the write it answers, which RFC 9110 8.8.2.1 forbids ("MUST NOT generate a Last-Modified date
that is later than the server's time of message origination"). ``fhir-server serve`` turns uvicorn's off
(``date_header=False``) and this middleware, around the whole application, sets it.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DATE_HEADER = b"date"


class DateHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != DATE_HEADER]
                message["headers"] = [*headers, (DATE_HEADER, formatdate(time.time(), usegmt=True).encode())]
            await send(message)

        await self.app(scope, receive, send_with_date)
