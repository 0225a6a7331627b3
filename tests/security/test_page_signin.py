"""People sign in to the pages (issue #11 item 11), embedded default (no identity provider): ``/report`` needs a
session in ``smart`` mode; ``fhir-server signin-link`` (here: the endpoint it calls with its client's token)
gives a single-use link valid five minutes that opens a session of the client's role and center; the cookie is
HttpOnly, SameSite=Lax, Secure over https; logout ends the session on every process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from fhir_server.bootstrap import start_services
from fhir_server.permissions import Role
from fhir_server.security.sessions import utc_now
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.security.signin import REPORT_TITLE, PageContexts, browser, csrf_of, signin_link
from tests.security.tokens import ClientsFile, app_client


@pytest.fixture(scope="module")
async def second_process(smart_settings: Settings, mongo_uri: str,
                         smart_services: Services) -> AsyncIterator[Services]:
    """Another server process (or node) on the same database."""
    svc = await start_services(smart_settings, mongo_uri)
    try:
        yield svc
    finally:
        await svc.close()


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _signed_in(http: httpx.AsyncClient, link: str) -> httpx.Response:
    response = await http.get(_local(link))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/report"
    return response


async def test_the_report_needs_a_session_in_smart_mode(smart_services: Services) -> None:
    async with browser(smart_services) as http:
        page = await http.get("/report")
    assert page.status_code == 401
    assert "fhir-server signin-link" in page.text and REPORT_TITLE not in page.text
    async with app_client(smart_services) as program:  # no browser: the API's 401
        response = await program.get("/report")
    assert response.status_code == 401 and response.json()["resourceType"] == "OperationOutcome"


async def test_a_signin_link_opens_a_session_with_the_clients_role_and_center(
        smart_services: Services, clients: ClientsFile, monkeypatch: pytest.MonkeyPatch) -> None:
    contexts = PageContexts(monkeypatch)
    ehr = clients.register("ehr", "FR-POI")
    async with browser(smart_services) as http:
        signed_in = await _signed_in(http, await signin_link(smart_services, ehr))
        page = await http.get("/report")
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("ifp_session=")
    flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags and "secure" not in flags  # plain http here
    assert page.status_code == 200 and REPORT_TITLE in page.text
    assert f"Signed in as {ehr.client_id} (ehr, FR-POI)" in page.text
    [ctx] = contexts.seen
    assert (ctx.caller, ctx.role, ctx.center) == (ehr.client_id, Role.EHR, "FR-POI")


async def test_a_researcher_sees_the_report_and_a_visitor_without_session_does_not(
        smart_services: Services, clients: ClientsFile, monkeypatch: pytest.MonkeyPatch) -> None:
    contexts = PageContexts(monkeypatch)
    researcher = clients.register("researcher")
    async with browser(smart_services) as http:
        await _signed_in(http, await signin_link(smart_services, researcher, "system/*.rs"))
        page = await http.get("/report", params={"country": "FR"})
    assert page.status_code == 200 and REPORT_TITLE in page.text
    assert [(c.role, c.center, "system/*.rs" in c.scopes) for c in contexts.seen] == [(Role.RESEARCHER, None, True)]
    async with browser(smart_services) as visitor:
        assert (await visitor.get("/report", params={"country": "FR"})).status_code == 401
    assert len(contexts.seen) == 1  # the visitor's request computed nothing


async def test_a_signin_link_is_single_use_across_processes(
        smart_services: Services, second_process: Services, clients: ClientsFile) -> None:
    link = await signin_link(smart_services, clients.register("researcher"), "system/*.rs")
    async with browser(second_process) as http:
        await _signed_in(http, link)
        assert (await http.get("/report")).status_code == 200  # the session works on the other process too
    async with browser(smart_services) as http:
        again = await http.get(_local(link))
        assert again.status_code == 400 and "not valid" in again.text
        assert "set-cookie" not in again.headers
        assert (await http.get("/report")).status_code == 401


async def test_a_signin_link_older_than_five_minutes_is_refused(
        smart_services: Services, clients: ClientsFile, monkeypatch: pytest.MonkeyPatch) -> None:
    link = await signin_link(smart_services, clients.register("researcher"), "system/*.rs")
    sessions = smart_services.authority.sessions  # type: ignore[union-attr]
    monkeypatch.setattr(sessions, "clock", lambda: utc_now() + timedelta(seconds=301))
    async with browser(smart_services) as http:
        response = await http.get(_local(link))
    assert response.status_code == 400 and "set-cookie" not in response.headers


async def test_a_wrong_code_opens_nothing_and_no_link_without_a_valid_token(smart_services: Services) -> None:
    async with browser(smart_services) as http:
        for code in ("wrong", ""):
            response = await http.get("/signin", params={"code": code})
            assert response.status_code == 400 and "set-cookie" not in response.headers
    async with app_client(smart_services) as anonymous:
        assert (await anonymous.post("/fhir/auth/signin-link")).status_code == 401
    async with app_client(smart_services, Authorization="Bearer a.b.c") as forged:
        assert (await forged.post("/fhir/auth/signin-link")).status_code == 401


async def test_the_cookie_is_secure_when_the_pages_are_served_over_https(
        smart_services: Services, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    async with browser(smart_services, "https://testserver") as http:
        link = await signin_link(smart_services, client, "system/*.rs")
        response = await _signed_in(http, link)
        assert "secure" in {flag.strip().lower() for flag in response.headers["set-cookie"].split(";")}
        assert (await http.get("/report")).status_code == 200


async def test_logout_needs_the_pages_form_and_ends_the_session_on_every_process(
        smart_services: Services, second_process: Services, clients: ClientsFile) -> None:
    link = await signin_link(smart_services, clients.register("researcher"), "system/*.rs")
    async with browser(smart_services) as http:
        await _signed_in(http, link)
        secret = http.cookies["ifp_session"]
        page = (await http.get("/report")).text
        forged = await http.post("/logout", data={"csrf": "guessed"})  # a form of another site
        assert forged.status_code == 403
        assert (await http.get("/report")).status_code == 200
        signed_out = await http.post("/logout", data={"csrf": csrf_of(page)})
        assert signed_out.status_code == 200 and "Signed out" in signed_out.text
        assert 'ifp_session=""' in signed_out.headers["set-cookie"] and "ifp_session" not in http.cookies
    async with browser(second_process) as stolen:  # the old cookie, replayed elsewhere, opens nothing
        stolen.cookies.set("ifp_session", secret)
        assert (await stolen.get("/report")).status_code == 401


async def test_after_signing_in_only_a_page_of_this_server_is_visited(
        smart_services: Services, clients: ClientsFile) -> None:
    client = clients.register("researcher")
    async with browser(smart_services) as http:
        for target, landing in (("https://evil.example/", "/report"), ("//evil.example", "/report"),
                                ("/report?country=FR", "/report?country=FR")):
            link = await signin_link(smart_services, client, "system/*.rs")
            response = await http.get(f"{_local(link)}&{urlencode({'next': target})}")
            assert response.headers["location"] == landing


async def test_without_identity_provider_signin_says_how(smart_services: Services) -> None:
    async with browser(smart_services) as http:
        response = await http.get("/signin")
    assert response.status_code == 200 and "fhir-server signin-link" in response.text
