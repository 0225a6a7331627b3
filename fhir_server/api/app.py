"""The ASGI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fhir_server import __version__
from fhir_server.api.authentication import Authenticator, authenticator_for
from fhir_server.api.bulk_files import router as bulk_files_router
from fhir_server.api.errors import install_error_handlers
from fhir_server.api.report_page import report_router
from fhir_server.api.routes import router
from fhir_server.api.signin import install_signin
from fhir_server.api.smart import router as smart_router
from fhir_server.bootstrap import start_services
from fhir_server.security.modes import check_auth_settings
from fhir_server.services import Services
from fhir_server.settings import Settings, get_settings


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
            yield
            return
        if not settings.mongodb_uri:
            raise RuntimeError("FHIR_MONGODB_URI is not set (use `fhir-server serve`, which starts a mongod)")
        app.state.services = await start_services(settings, settings.mongodb_uri)
        # What start-up built lives as long as the process: keep it out of the cyclic collector's full passes
        # (measured with bench/search.py: full collections of them were 40 ms pauses at the p95 of searches).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPI(title="ifp-fhir", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if services is not None:
        app.state.services = services
    app.state.authenticator = authenticator or authenticator_for(settings)
    install_error_handlers(app)
    if settings.auth_mode == "smart":
        app.include_router(smart_router)
        install_signin(app)  # people sign in to the pages
    app.include_router(bulk_files_router)
    app.include_router(report_router)
    app.include_router(router)  # last: its catch-all under /fhir would shadow any route included after it
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory fhir_server.api.app:app_factory`` (several workers)."""
    return create_app()
