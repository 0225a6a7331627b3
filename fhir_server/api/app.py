"""The ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

from fhir_server import __version__
from fhir_server.api.authentication import Authenticator, authenticator_for
from fhir_server.api.bulk_files import router as bulk_files_router
from fhir_server.api.errors import install_error_handlers
from fhir_server.api.head import HeadWithoutContent
from fhir_server.api.health import router as health_router
from fhir_server.api.observability import RequestObservability
from fhir_server.api.report_page import report_router
from fhir_server.api.routes import router
from fhir_server.api.signin import install_signin
from fhir_server.api.smart import router as smart_router
from fhir_server.bootstrap import start_services
from fhir_server.bulk.operation import sweep as sweep_exports
from fhir_server.bulk.runner import stop_all as stop_exports
from fhir_server.heap import settle_heap
from fhir_server.logs import configure as configure_logging
from fhir_server.security.modes import check_auth_settings
from fhir_server.services import Services
from fhir_server.settings import Settings, get_settings

log = logging.getLogger(__name__)


class FhirApp(FastAPI):
    """FastAPI with the request observability (request id, metrics, access log, ``Date``) outermost, around the
    error handlers too: a 500 is counted and carries its ``X-Request-Id`` and ``Date`` like any response. Inside
    it, a HEAD's content is dropped once everything else (the gzip coding) has shaped the GET's answer."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestObservability(HeadWithoutContent(super().build_middleware_stack()))


def create_app(settings: Settings | None = None, services: Services | None = None,
               authenticator: Authenticator | None = None) -> FastAPI:
    """The app. With ``services`` given (tests) it uses them; otherwise it connects to
    ``settings.mongodb_uri`` at start-up and disconnects at shutdown. ``authenticator`` tells who calls
    (default: the one ``FHIR_AUTH_MODE`` names: bearer tokens, or everyone the full-access system caller)."""
    settings = settings or get_settings()
    if authenticator is None:
        check_auth_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            app.state.ready = True
            yield
            return
        if not settings.mongodb_uri:
            raise RuntimeError("FHIR_MONGODB_URI is not set (use `fhir-server serve`, which starts a mongod)")
        app.state.services = await start_services(settings, settings.mongodb_uri)
        settle_heap()
        sweeper = asyncio.create_task(_sweep_forever(app.state.services), name="export-sweep")
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False  # from now on /health/ready answers 503
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await stop_exports()  # handed over: another node resumes them at once
            await app.state.services.close()

    app = FhirApp(title="ifp-fhir", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if services is not None:
        app.state.services = services
        app.state.ready = True
    app.state.authenticator = authenticator or authenticator_for(settings)
    install_error_handlers(app)
    app.include_router(health_router)
    if settings.auth_mode == "smart":
        app.include_router(smart_router)
        install_signin(app)  # people sign in to the pages
    app.include_router(bulk_files_router)
    app.include_router(report_router)
    app.include_router(router)  # last: its catch-all under /fhir would shadow any route included after it
    if settings.gzip_level:
        # Responses in gzip to clients that accept it (Searchsets, exports and the 450 kB CapabilityStatement
        # shrink 5-10x over the WAN between the centers); Starlette skips small bodies and compressed media
        app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=settings.gzip_level)
    return app


async def _sweep_forever(services: Services) -> None:
    """At start and every ``FHIR_JOB_SWEEP_SECONDS``: resume exports whose process died, delete expired ones. A
    failure (MongoDB unreachable) is logged and the next round tries again."""
    while True:  # first at start-up: a restarted node resumes what it (or another node) left at once
        try:
            await sweep_exports(services)
        except Exception:
            log.exception("export sweep failed; trying again in %s s", services.settings.job_sweep_seconds)
        await asyncio.sleep(services.settings.job_sweep_seconds)


def app_factory() -> FastAPI:
    """For ``uvicorn --factory fhir_server.api.app:app_factory`` (each worker process calls it): JSON logs
    configured here, since a worker process does not inherit the logging set up by ``fhir-server serve``."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
