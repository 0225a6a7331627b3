"""HEAD (RFC 9110 9.3.2): "the same header fields ... as it would have sent if the request method had been GET",
without the content.

The application answers a HEAD as it answers the GET, and this ASGI middleware, wrapped around everything that
shapes the response (the gzip middleware included), drops the content on its way out. So a HEAD carries the
GET's ``Content-Encoding``, ``Vary`` and coded ``Content-Length`` too, which no route could know before the
middleware had coded the content.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadWithoutContent:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_content(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # a streamed GET's parts: the HEAD's single empty part comes with the last one
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, without_content)
