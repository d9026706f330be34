"""Interview routes: start an interview, answer its questions, read it; a thin adapter over
:class:`callvet.questionnaire.service.InterviewService`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from callvet.api.context import AppContext
from callvet.api.deps import get_ctx, require
from callvet.api.schemas import InterviewList
from callvet.core.application import Application
from callvet.core.auth import Principal, Role
from callvet.questionnaire.service import InterviewService
from callvet.voice.whisper import server_asr
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

__all__ = ["interview_service", "router"]


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Answers the robot sends no transcript for are recognised on the server while this app runs:
    Whisper (zh, en) when built, else PocketSphinx (en). (The questionnaire's call observer is given
    to the call server by the composition root, :meth:`callvet.services.Services.call_observers`.)"""
    ctx: AppContext = app.state.ctx
    with server_asr(ctx.settings.models_dir):
        yield


router = APIRouter(tags=["interviews"], lifespan=_lifespan)


def interview_service(ctx: AppContext) -> InterviewService:
    """The process-wide service (sentence encoder loaded once, when built): ``ctx.interviews``."""
    return ctx.interviews


class CreateInterview(BaseModel):
    application: Application = Field(description="the card application (docs/contracts)")
    language: Literal["zh-CN", "en", "en-US", "en-GB"] | None = Field(
        default=None, description="zh-CN, en, en-US or en-GB; default: application's"
    )


class AnswerIn(BaseModel):
    question_id: str = Field(min_length=1, max_length=200, pattern=r"\S")
    transcript: str = Field(max_length=20_000)
    timing: dict[str, Any] | None = Field(
        default=None, description="{delay_s, duration_s, pauses: [s, ...], speech_rate}"
    )
    prosody: dict[str, Any] | None = Field(
        default=None, description="{pitch_mean, pitch_std, energy_mean, energy_std, ...}"
    )


class AbortIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


@router.post("/v1/interviews", status_code=201)
def create_interview(
    body: CreateInterview,
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    application = body.application.model_dump(mode="json", exclude_unset=True)
    return interview_service(ctx).create(application, language=body.language, actor=p.actor)


@router.post("/v1/interviews/{interview_id}/answers")
def answer_question(
    interview_id: str,
    body: AnswerIn,
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    return interview_service(ctx).answer(
        interview_id,
        body.question_id,
        body.transcript,
        timing=body.timing,
        prosody=body.prosody,
        actor=p.actor,
    )


@router.get("/v1/interviews/{interview_id}")
def get_interview(
    interview_id: str,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    return interview_service(ctx).get(interview_id)


@router.get("/v1/interviews", response_model=InterviewList)
def list_interviews(
    application_id: str = Query(..., min_length=1, max_length=64),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    return {"interviews": interview_service(ctx).list_for_application(application_id)}


@router.post("/v1/interviews/{interview_id}/abort")
def abort_interview(
    interview_id: str,
    body: AbortIn,
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    return interview_service(ctx).abort(interview_id, reason=body.reason, actor=p.actor)


@router.delete("/v1/interviews/{interview_id}", status_code=204)
def delete_interview(
    interview_id: str,
    reason: str = Query(..., min_length=1, max_length=500),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ADMIN)),
) -> None:
    interview_service(ctx).delete(interview_id, reason=reason, actor=p.actor)
