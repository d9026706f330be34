"""Operations endpoints and middleware: ``/healthz``, ``/readyz``, Prometheus ``/metrics``, request ids.

``/healthz`` says the process answers; ``/readyz`` says it can do its job: it is not draining
(SIGTERM), the database is reachable and at the newest migration, the speaker models load, and the
blacklist's searched index holds exactly the stored prints (503 with ``reasons`` otherwise, so a load
balancer keeps traffic away). ``/metrics``
counts requests by route template (bounded labels: an unmatched path is ``unmatched``), their latency,
and reads state at scrape time: calls live in this process, calls with an alarm, decisions by verdict,
queue depths (outbox not yet published, open human tasks) and the index size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from callvet.api.context import AppContext
from callvet.api.drain import Drain, register
from callvet.core.errors import CallvetError
from callvet.core.logs import new_request_id, request_id
from callvet.core.migrations import current, head
from callvet.core.tables import outbox
from callvet.decision.tables import decision_records
from callvet.voice.call.tables import calls
from callvet.voice.tables import blacklist_samples
from callvet.workflow.tables import wf_tasks
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

__all__ = ["Metrics", "RequestContextMiddleware", "install", "readiness"]

log = logging.getLogger("callvet.ops")
access = logging.getLogger("callvet.access")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, ctx: AppContext) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("callvet_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("callvet_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(ctx))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request. The labelled children are kept per (method, route, status) -- a bounded set:
        route templates, not paths -- since looking them up by labels each time cost as much as a
        trivial request's handler (issue 17)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            if len(self._children) < 4096:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class _StateCollector(Collector):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        server = self.ctx.peek("calls")
        yield GaugeMetricFamily("callvet_calls_live", "calls streaming in this process",
                                value=len(server.active) if server is not None else 0)
        bl = self.ctx.peek("blacklist")
        if bl is not None:
            yield GaugeMetricFamily("callvet_index_prints", "prints in the searched blacklist index",
                                    value=len(bl.index))
        try:
            yield from self._stored()
        except Exception:
            log.exception("metrics: stored state could not be read")

    def _stored(self) -> Iterator[GaugeMetricFamily]:
        with self.ctx.db.connect() as conn:
            alarms = conn.execute(select(func.count()).select_from(calls).where(calls.c.alarm_ever)).scalar()
            by_verdict = conn.execute(select(decision_records.c.decision, func.count())
                                      .group_by(decision_records.c.decision)).all()
            pending = conn.execute(select(func.count()).select_from(outbox)
                                   .where(outbox.c.published_at.is_(None))).scalar()
            tasks = conn.execute(select(func.count()).select_from(wf_tasks)
                                 .where(wf_tasks.c.status == "open")).scalar()
            stored = conn.execute(select(func.count()).select_from(blacklist_samples)).scalar()
        yield GaugeMetricFamily("callvet_calls_alarmed", "stored calls that raised a voiceprint alarm",
                                value=int(alarms or 0))
        g = GaugeMetricFamily("callvet_decisions", "stored decisions by verdict", labels=["decision"])
        for verdict, n in by_verdict:
            g.add_metric([str(verdict)], int(n))
        yield g
        q = GaugeMetricFamily("callvet_queue_depth", "work waiting, by queue", labels=["queue"])
        q.add_metric(["outbox"], int(pending or 0))
        q.add_metric(["human_tasks"], int(tasks or 0))
        yield q
        yield GaugeMetricFamily("callvet_blacklist_prints_stored", "voiceprints stored (all back ends)",
                                value=int(stored or 0))


class RequestContextMiddleware:
    """Request id in (``X-Request-ID``) and out, one access log line and metrics per HTTP request.

    The access line has the path without its query string (keys must never reach a log)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"),
                        None)
        rid = new_request_id(incoming)
        token = request_id.set(rid)
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                request_id.reset(token)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, seconds)
            if access.isEnabledFor(logging.INFO):
                access.info("%s %s %d", scope["method"], scope.get("path", ""), status, extra={
                    "method": scope["method"], "route": route, "path": scope.get("path", ""),
                    "status": status, "duration_ms": round(seconds * 1000, 2)})
            request_id.reset(token)


def readiness(ctx: AppContext, drain: Drain | None = None) -> tuple[bool, dict[str, Any]]:
    """(ready, body): every check with its detail, and the reasons it is not ready. A draining replica
    (SIGTERM, :mod:`callvet.api.drain`) is not ready whatever else holds, so the balancer leaves it."""
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    if drain is not None and drain.active:
        checks["drain"] = {"ok": False, "live_calls": drain.live_calls(), "handed_over": drain.handed_over}
        reasons.append("draining")
    try:
        with ctx.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        rev, newest = current(ctx.db), head()
        checks["database"] = {"ok": rev == newest, "revision": rev, "head": newest}
        if rev != newest:
            reasons.append("migrations_pending")
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        reasons.append("database_unreachable")
    engine = None
    try:
        engine = ctx.voice
        checks["models"] = {"ok": True, "encoder": engine.encoder_name, "backend_id": engine.backend_id}
    except CallvetError as exc:
        checks["models"] = {"ok": False, "code": exc.code, "message": exc.message}
        reasons.append("models_unavailable")
    if engine is not None and "database_unreachable" not in reasons:
        try:
            sync = ctx.blacklist.index_sync()
            checks["index"] = {"ok": sync["in_sync"], **sync}
            if not sync["in_sync"]:
                reasons.append("index_out_of_sync")
        except CallvetError as exc:
            checks["index"] = {"ok": False, "code": exc.code, "message": exc.message}
            reasons.append("index_unavailable")
    else:
        checks["index"] = {"ok": False, "skipped": True}
        reasons.append("index_unavailable")
    return not reasons, {"status": "ready" if not reasons else "not_ready", "reasons": reasons,
                         "checks": checks}


def _live_calls(ctx: AppContext) -> int:
    server = ctx.peek("calls")
    return len(server.active) if server is not None else 0


async def _hand_over(ctx: AppContext) -> int:
    server = ctx.peek("calls")
    return int(await server.hand_over_all()) if server is not None else 0


def install(app: FastAPI, ctx: AppContext) -> Metrics:
    """Add the middleware and the ``/readyz`` and ``/metrics`` routes to ``app``."""
    metrics = Metrics(ctx)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    drain = app.state.drain = register(Drain(lambda: _live_calls(ctx), lambda: _hand_over(ctx)))

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready; see reasons"}})
    def readyz(request: Request) -> JSONResponse:
        ok, body = readiness(ctx, drain)
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
