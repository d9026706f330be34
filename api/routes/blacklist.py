"""Blacklist REST API: fraudster identities and their voice samples, and 1:N voiceprint identification.

Uploads are bounded while they stream in: :class:`UploadLimitRoute` refuses a declared Content-Length
above ``Settings.max_upload_bytes`` (plus multipart framing) before reading anything, and counts bytes as
they arrive for chunked bodies, so an oversized upload is cut off with 413 ``too_large`` instead of being
spooled whole. Endpoints are plain ``def`` so embedding runs in the threadpool, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Literal

from callvet.api.context import AppContext
from callvet.api.deps import IntId, get_ctx, require
from callvet.core.auth import Principal, Role
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message

__all__ = ["MULTIPART_SLACK", "UploadLimitRoute", "blacklist_service", "router", "voice_engine"]

#: Room for multipart boundaries, headers and the small form fields around the audio part.
MULTIPART_SLACK = 64 * 1024


def voice_engine(ctx: AppContext) -> VoiceEngine:
    """The per-process voice engine (shared with the call server under the service name ``voice``)."""
    return ctx.service("voice", lambda c: VoiceEngine.from_settings(c.settings))


def blacklist_service(ctx: AppContext) -> Blacklist:
    """The per-process blacklist (service name ``blacklist``), built on :func:`voice_engine`."""
    engine = voice_engine(ctx)
    return ctx.service("blacklist", lambda c: Blacklist.from_settings(c.settings, c.db, engine))


def _too_large(limit: int, what: str = "request body") -> dict[str, Any]:
    return {"code": "too_large", "message": f"{what} exceeds the upload limit of {limit} bytes",
            "max_upload_bytes": limit}


class UploadLimitRoute(APIRoute):
    """An APIRoute that stops reading a request body once it exceeds the configured upload limit."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            max_bytes = get_ctx(request).settings.max_upload_bytes
            limit = max_bytes + MULTIPART_SLACK
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return JSONResponse(status_code=413, content={"detail": _too_large(max_bytes)})
            received = 0
            receive = request.receive

            async def counting_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise HTTPException(status_code=413, detail=_too_large(max_bytes))
                return message

            return await handler(Request(request.scope, counting_receive))

        return limited


router = APIRouter(tags=["blacklist"], route_class=UploadLimitRoute)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    detail: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "unknown identity"},
    413: {"model": ErrorOut, "description": "upload larger than max_upload_bytes (code too_large)"},
    422: {"model": ErrorOut, "description": "bad input or audio (codes empty, not_audio, unsupported_format, "
          "bad_sample_rate, too_large, nan, clipped, silence, too_little_speech, ...)"},
    503: {"model": ErrorOut, "description": "voice models not built"},
}


class IdentityIn(BaseModel):
    label: str = Field(min_length=1, max_length=200, description="how analysts refer to this fraudster")
    notes: str = Field("", max_length=10_000)


class IdentityOut(BaseModel):
    id: int
    label: str
    notes: str
    created_by: str
    created_at: str
    samples: int = Field(description="number of voice samples (prints) enrolled")
    net_speech_s: float = 0.0


class PrintOut(BaseModel):
    sample_id: int
    net_speech_s: float
    backend_id: str
    searchable: bool = Field(description="made by the engine in use (prints of another encoder are not)")
    sha256: str = Field(description="SHA-256 of the uploaded bytes; the audio itself is not kept")
    created_by: str
    created_at: str


class IdentityDetail(IdentityOut):
    prints: list[PrintOut]


class IdentityList(BaseModel):
    identities: list[IdentityOut]


class MatchOut(BaseModel):
    identity_id: int
    label: str
    score: float = Field(description="calibrated score; the alarm threshold applies to it")


class SampleOut(BaseModel):
    sample_id: int
    identity_id: int
    net_speech_s: float
    duration_s: float
    sha256: str
    backend_id: str
    possible_duplicate_of: list[MatchOut] = Field(
        description="other identities this voice already matches above threshold (not refused: analysts "
        "decide whether to merge)")
    self_score: float | None = Field(description="best score against this identity's earlier prints")


class DeleteOut(BaseModel):
    id: int
    label: str
    samples_removed: int


class IdentifyOut(BaseModel):
    net_speech_s: float
    alarm: bool
    threshold: float
    matches: list[MatchOut] = Field(description="best first, one entry per identity")
    backend_id: str
    searched: int = Field(description="prints searched")


def _read_upload(audio: UploadFile, max_bytes: int) -> bytes:
    data = audio.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(status_code=413, detail=_too_large(max_bytes, "audio file"))
    return data


def _decode_kw(encoding: str, sample_rate: int | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"encoding": encoding}
    if sample_rate is not None:
        kw["sample_rate"] = sample_rate
    return kw


@router.post("/v1/blacklist/identities", status_code=201, response_model=IdentityOut, responses=ERRORS)
def create_identity(
    body: IdentityIn,
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> dict[str, Any]:
    """Create a fraudster identity (no voice yet; add samples next)."""
    return blacklist_service(ctx).create_identity(body.label, body.notes, p.actor)


@router.post("/v1/blacklist/identities/{identity_id}/samples", status_code=201, response_model=SampleOut,
             responses=ERRORS)
def add_sample(
    identity_id: IntId,
    audio: UploadFile = File(..., description="WAV, or raw pcm16/mulaw with encoding and sample_rate"),
    encoding: Literal["auto", "wav", "pcm16", "mulaw"] = Form("auto"),
    sample_rate: int | None = Form(None, ge=1, le=384_000, description="required for pcm16 and mulaw"),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> dict[str, Any]:
    """Enrol one recording of this identity; only the voiceprint and the file's SHA-256 are stored."""
    data = _read_upload(audio, ctx.settings.max_upload_bytes)
    return blacklist_service(ctx).add_sample(identity_id, data, p.actor, **_decode_kw(encoding, sample_rate))


@router.get("/v1/blacklist/identities", response_model=IdentityList, responses=ERRORS)
def list_identities(
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    return {"identities": blacklist_service(ctx).list_identities()}


class RecallOut(BaseModel):
    k: int
    queries: int
    nprobe: int
    recall_at_1: float
    recall_at_k: float


class StatusOut(BaseModel):
    backend_id: str
    threshold: float
    kind: str = Field(description="exact or ivf")
    searchable_prints: int
    nprobe: int
    recall: RecallOut | None = Field(description="measured when the approximate index was built")
    generation: int
    ann_threshold: int
    opened: dict[str, Any] = Field(description="how this process opened the index (loaded or rebuilt, why)")
    unsearchable_prints_by_backend: dict[str, int] = Field(
        description="prints made by another encoder/back end: re-enrol them to make them searchable")


@router.get("/v1/blacklist/status", response_model=StatusOut, responses=ERRORS)
def status(
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    """The search index as this worker sees it."""
    return blacklist_service(ctx).status()


@router.get("/v1/blacklist/identities/{identity_id}", response_model=IdentityDetail, responses=ERRORS)
def get_identity(
    identity_id: IntId,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    return blacklist_service(ctx).get_identity(identity_id)


@router.delete("/v1/blacklist/identities/{identity_id}", response_model=DeleteOut, responses=ERRORS)
def delete_identity(
    identity_id: IntId,
    reason: str = Query(..., min_length=1, max_length=2000, description="why (kept in the audit log)"),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> dict[str, Any]:
    """Delete the identity and all its prints from the database and the search index (audited)."""
    return blacklist_service(ctx).delete_identity(identity_id, p.actor, reason)


@router.post("/v1/voiceprint/identify", response_model=IdentifyOut, responses=ERRORS)
def identify(
    audio: UploadFile = File(..., description="WAV, or raw pcm16/mulaw with encoding and sample_rate"),
    encoding: Literal["auto", "wav", "pcm16", "mulaw"] = Form("auto"),
    sample_rate: int | None = Form(None, ge=1, le=384_000),
    top_k: int = Query(5, ge=1, le=50),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
) -> dict[str, Any]:
    """1:N search of a caller's voice against the blacklist; ``alarm`` when the best match passes."""
    data = _read_upload(audio, ctx.settings.max_upload_bytes)
    bl = blacklist_service(ctx)
    engine = bl.engine
    analysis = engine.analyse(engine.decode(data, **_decode_kw(encoding, sample_rate)))
    result = bl.identify_voiceprint(engine.voiceprint(analysis.speech), top_k=top_k)
    return result.to_dict()
