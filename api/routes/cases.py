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
from typing import Any, Literal

from callvet.api.context import AppContext
from callvet.api.deps import get_ctx, require
from callvet.api.routes.calls import StarletteTransport
from callvet.api.schemas import CaseList, CaseOut
from callvet.cases.dispatch import NO_CONNECT_OUTCOMES
from callvet.cases.service import CaseService, Intake
from callvet.cases.state import CaseStatus
from callvet.cases.tables import cases
from callvet.core.application import Application
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


class IntakeIn(Intake):
    """The intake as the OpenAPI states it: the application's own schema and the known processes."""

    application: Application  # type: ignore[assignment]
    process: Literal["card_issuance", "limit_adjustment", "instalment_loan"] | None = None


@router.post("/v1/applications", status_code=201, response_model=CaseOut,
             responses={200: {"description": "submitted before"},
                        404: {"description": "the case's workflow instance was erased"}})
def submit_application(
    response: Response,
    body: IntakeIn = Body(...),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    """201 with the new case; 200 with the same case when the application was submitted before."""
    case, created = case_service(ctx).create(body.model_dump(mode="json", exclude_unset=True), actor=p.actor)
    if not created:
        response.status_code = 200
    return case


@router.get("/v1/cases", response_model=CaseList)
def list_cases(
    status: CaseStatus | None = Query(None),
    limit: int = Query(50, ge=1, le=200),
    after: str | None = Query(None, max_length=120, description="next_cursor of the previous page"),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(*READERS)),
) -> dict[str, Any]:
    return case_service(ctx).list(status=status.value if status else None, limit=limit, after=after)


@router.get("/v1/cases/{case_id}", response_model=CaseOut)
def get_case(case_id: str, ctx: AppContext = Depends(get_ctx),
             _p: Principal = Depends(require(*READERS))) -> dict[str, Any]:
    return case_service(ctx).get(case_id)


@router.post("/v1/robot/calls:claim", responses={204: {"description": "nothing may be dialled now"}})
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
    outcome: Literal[NO_CONNECT_OUTCOMES] = Field(  # type: ignore[valid-type]
        description="no_answer, busy, failed, voicemail, invalid_number, refused")
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
