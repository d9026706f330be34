"""The FastAPI application: routers per part, domain errors mapped to HTTP once, here.

Errors are RFC 9457 problems (:mod:`callvet.api.problems`), bodies are bounded before they are parsed
(:mod:`callvet.api.limits`), JSON bodies are held to their documented types (:mod:`callvet.api.strictjson`),
secrets are redacted from every log line (:mod:`callvet.api.redact`), and ``/docs`` runs on local
assets (:mod:`callvet.api.docs`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from callvet import __version__
from callvet.api import docs, limits, ops, problems, redact, schemas, strictjson
from callvet.api.routes import audit, blacklist, calls, decisions, forms, interviews, portrait, workflow
from callvet.api.routes import cases as cases_routes
from callvet.console import mount as mount_console
from callvet.core.db import Database
from callvet.core.settings import Settings
from callvet.services import open_services
from fastapi import FastAPI

__all__ = ["create_app"]

status_for = problems.status_for


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    redact.install()
    ctx = open_services(settings, db)  # the composition root: every service of this process
    settings = ctx.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.start_outbox_relay()  # issue 17: events to the broker (docs/events.md), when one is set
        yield
        ctx.close()

    app = FastAPI(
        title="callvet",
        version=__version__,
        description="Voice-first investigation service: voiceprint blacklist, call server, "
        "questionnaire, decision engine and approval workflow.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx

    @app.get("/healthz", tags=["ops"], response_model=schemas.Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for module in (decisions, audit, blacklist, calls, interviews, workflow, portrait):  # the hot path first
        app.include_router(module.router)
    app.include_router(forms.router)  # issue 15: scanned forms
    app.include_router(cases_routes.router)  # issue 11: after interviews, so its call observer runs last
    mount_console(app)  # issue 14: the web console under /console
    app.router.routes.insert(0, decisions.fast_route(app.router))  # issue 17: the hot path, first
    app.state.metrics = ops.install(app, ctx)  # issue 9: /readyz, /metrics, request ids
    strictjson.install(app)  # inside the 415 check: JSON bodies hold to their documented types
    problems.install(app)
    docs.install(app)
    app.add_middleware(limits.BodyLimit, settings=settings)
    return app
