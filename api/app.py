"""The FastAPI application: routers per part, domain errors mapped to HTTP once, here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import import_module

from callvet import __version__
from callvet.api import ops
from callvet.api.context import AppContext
from callvet.api.routes import audit, blacklist, calls, decisions, interviews, portrait, workflow
from callvet.api.routes import cases as cases_routes
from callvet.core.db import Database
from callvet.core.errors import CallvetError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from callvet.core.settings import Settings, get_settings
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["create_app"]

_STATUS: list[tuple[type[CallvetError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (Unavailable, 503),
]


def status_for(exc: CallvetError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    if db is None:
        settings.ensure_dirs()
        db = Database(settings.database_url)
        db.create_schema()
    ctx = AppContext(settings=settings, db=db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="callvet",
        version=__version__,
        description="Voice-first investigation service: voiceprint blacklist, call server, "
        "questionnaire, decision engine and approval workflow.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx

    @app.exception_handler(CallvetError)
    async def _domain_error(_request: Request, exc: CallvetError) -> JSONResponse:
        return JSONResponse(status_code=status_for(exc), content={"detail": exc.to_dict()})

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for module in (audit, blacklist, calls, interviews, decisions, workflow, portrait):
        app.include_router(module.router)
    app.include_router(import_module("callvet.api.routes.forms").router)  # issue 15: scanned forms
    app.include_router(cases_routes.router)  # issue 11: after interviews, so its call observer runs last
    app.state.metrics = ops.install(app, ctx)  # issue 9: /readyz, /metrics, request ids
    return app
