"""Test helpers for people signing in to the pages (issue #11 item 11): a browser (an httpx client of the app
that asks for HTML and keeps cookies), and what the report page was given (its ``RequestContext``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from fhir_server.api import report_page
from fhir_server.context import RequestContext
from fhir_server.services import Services
from tests.security.tokens import RegisteredClient, app_client, bearer_client, token_for

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what a browser sends for a page
REPORT_TITLE = "<title>IFP registry report"


def browser(services: Services, base_url: str = "http://testserver") -> httpx.AsyncClient:
    http = app_client(services, Accept=HTML)
    http.base_url = httpx.URL(base_url)
    return http


async def signin_link(services: Services, client: RegisteredClient, scope: str = "system/*.cruds") -> str:
    """What ``fhir-server signin-link --client`` prints: a token of the client, then the server's link."""
    async with app_client(services) as anonymous:
        token = await token_for(anonymous, client, scope)
    async with bearer_client(services, token) as http:
        response = await http.post("/fhir/auth/signin-link")
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 300
    return str(response.json()["url"])


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no sign-out form"
    return match.group(1)


class PageContexts:
    """Records the RequestContext every report page computes with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[RequestContext] = []
        compute = report_page.compute

        async def recording(ctx: RequestContext, *args: Any, **kwargs: Any) -> Any:
            self.seen.append(ctx)
            return await compute(ctx, *args, **kwargs)

        monkeypatch.setattr(report_page, "compute", recording)
