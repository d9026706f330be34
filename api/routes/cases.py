"""Case routes: application intake, the case record, and the robots' call dispatch.

Robot routes require the ``robot`` role explicitly (``require(Role.ROBOT)``). The token-only stream
endpoints (``/v1/cases/stream`` Twilio, ``/v1/cases/fork`` mod_audio_fork) take no API key: the one-time
token from the claim, in ``customParameters`` (or the fork metadata), is the credential, so no long-lived
key ever sits in a URL a telephony provider logs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import get_ctx, require
from callvet.api.routes.calls import StarletteTransport
from callvet.cases.service import CaseService
from callvet.cases.tables import cases
from callvet.core.auth import Principal, Role
from callvet.workflow.forms import form_for
from fastapi import APIRouter, Body, Depends, Query, Request, Response, WebSocket
from pydantic import BaseModel, Field
from sqlalchemy import select

__all__ = ["case_service", "router", "task_context"]


def case_service(ctx: AppContext) -> CaseService:
    """The process's case service (``ctx.cases``)."""
    return ctx.cases


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Pump call results to the workflows while the app runs; pending results left by a crash are
    delivered at start (``CALLVET_CASES_PUMP=0`` leaves them to another process). The case's call
    observer is given to the call server by the composition root."""
    ctx: AppContext = app.state.ctx
    svc = ctx.cases
    if os.environ.get("CALLVET_CASES_PUMP", "1") != "0":
        svc.start_pump()
    try:
        yield
    finally:
        svc.close()


router = APIRouter(tags=["cases"], lifespan=_lifespan)

READERS = (Role.ANALYST, Role.APPROVER, Role.RISK_OFFICER, Role.AUDITOR)


@router.post("/v1/applications", status_code=201)
def submit_application(
    response: Response,
    body: dict[str, Any] = Body(..., description='{"application": {...}, "process"?, "product"?, "amount"?, '
                                "\"call_window\"?: {timezone, start_hour, end_hour}}"),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    """201 with the new case; 200 with the same case when the application was submitted before."""
    case, created = case_service(ctx).create(body, actor=p.actor)
    if not created:
        response.status_code = 200
    return case


@router.get("/v1/cases")
def list_cases(
    status: str | None = Query(None),
    limit: int = Query(50, ge=1, le=200),
    after: str | None = Query(None, max_length=120, description="next_cursor of the previous page"),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(*READERS)),
) -> dict[str, Any]:
    return case_service(ctx).list(status=status, limit=limit, after=after)


@router.get("/v1/cases/{case_id}")
def get_case(case_id: str, ctx: AppContext = Depends(get_ctx),
             _p: Principal = Depends(require(*READERS))) -> dict[str, Any]:
    return case_service(ctx).get(case_id)


@router.post("/v1/robot/calls:claim")
def claim_call(request: Request, response: Response, ctx: AppContext = Depends(get_ctx),
               p: Principal = Depends(require(Role.ROBOT))) -> dict[str, Any]:
    """The next call to place, leased to this robot; 204 when nothing may be dialled now."""
    base = str(request.base_url).rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
    got = case_service(ctx).claim(p.actor, base_url=base)
    if got is None:
        response.status_code = 204
        return {}
    return got


class OutcomeIn(BaseModel):
    outcome: str = Field(description="no_answer, busy, failed, voicemail, invalid_number, refused")
    lease_version: int = Field(ge=0)


@router.post("/v1/robot/calls/{request_id}/outcome")
def call_outcome(request_id: str, body: OutcomeIn, ctx: AppContext = Depends(get_ctx),
                 p: Principal = Depends(require(Role.ROBOT))) -> dict[str, Any]:
    """A claimed call that never connected: retried after a back-off within calling hours, or, past the
    retry limit, the case goes on without a call (to a person)."""
    return case_service(ctx).report_outcome(request_id, body.outcome, lease_version=body.lease_version,
                                            robot=p.actor)


async def _token_stream(ws: WebSocket, protocol: str) -> None:
    ctx: AppContext = ws.app.state.ctx
    await ws.accept()
    await ctx.calls.handle(StarletteTransport(ws), protocol, "stream:case-token", require_case=True)


@router.websocket("/v1/cases/stream")
async def case_stream(ws: WebSocket) -> None:
    await _token_stream(ws, "twilio")


@router.websocket("/v1/cases/fork")
async def case_fork(ws: WebSocket) -> None:
    await _token_stream(ws, "fork")


def task_context(ctx: AppContext, task: dict[str, Any]) -> dict[str, Any]:
    """What a person completing ``task`` needs: its form and the case's evidence."""
    summary = ctx.workflow.summary(task["instance_id"], with_events=True)
    data = summary.get("data") or {}
    out: dict[str, Any] = {"form": form_for(summary["process_key"], task["element"])}
    with ctx.db.connect() as conn:
        case_id = conn.execute(select(cases.c.case_id)
                               .where(cases.c.instance_id == task["instance_id"])).scalar()
    inv = data.get("investigation") or {}
    out["evidence"] = {
        "case_id": case_id,
        "decision": {k: {"decision": (data.get(k) or {}).get("decision"),
                         "reasons": (data.get(k) or {}).get("reasons")} for k in ("prescreen", "final")
                     if data.get(k)},
        "interview_result": inv.get("questionnaire"),
        "review_flags": inv.get("review_flags") or [],
        "voiceprint_alarm": inv.get("voiceprint_alarm"),
        "voiceprint": case_service(ctx).get(case_id, timeline=False).get("evidence") if case_id else None,
    }
    return out
