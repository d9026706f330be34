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
from callvet.api.problems import problem
from callvet.core.auth import Principal, Role
from callvet.core.errors import CallvetError
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message

__all__ = ["MULTIPART_SLACK", "UploadLimitRoute", "blacklist_service", "router", "spoof_detector",
           "spoof_result", "voice_engine"]

#: Room for multipart boundaries, headers and the small form fields around the audio part.
MULTIPART_SLACK = 64 * 1024


def voice_engine(ctx: AppContext) -> VoiceEngine:
    """The per-process voice engine (``ctx.voice``, shared with the call server)."""
    return ctx.voice


def blacklist_service(ctx: AppContext) -> Blacklist:
    """The per-process blacklist (``ctx.blacklist``), built on :func:`voice_engine`."""
    return ctx.blacklist


def spoof_detector(ctx: AppContext) -> Any:
    """The per-process spoof countermeasure (``ctx.spoof``); raises ``Unavailable`` (503) when AASIST
    is not built or the back end is missing (not cached, so a later build is picked up)."""
    return ctx.spoof


def spoof_result(ctx: AppContext, speech16k: Any) -> dict[str, Any]:
    """``{"score", "flag", "kind"}`` of one request's speech; when the countermeasure cannot run the
    score and flag are null and ``error`` says why (the voiceprint answer is still given)."""
    if not ctx.settings.spoof:
        return {"score": None, "flag": None, "kind": None, "error": "spoof_off"}
    try:
        return spoof_detector(ctx).score(speech16k).to_dict()  # type: ignore[no-any-return]
    except CallvetError as exc:
        return {"score": None, "flag": None, "kind": None, "error": exc.code}


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
                body = _too_large(max_bytes)
                return problem(413, "too_large", body["message"], max_upload_bytes=max_bytes)
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
    409: {"model": ErrorOut, "description": "enrolment refused: duplicate_sample, or spoof_flagged (the "
          "countermeasure flags the recording; retry with override_spoof and override_reason)"},
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
    score: float = Field(description="normalised score (s-norm against the cohort); the tier thresholds "
                         "apply to it")
    llr: float | None = Field(None, description="calibrated log-likelihood ratio (natural log); shorter "
                              "speech on either side gives it less weight")


class InDomainTierOut(BaseModel):
    recent_calls: int = Field(description="recent call prints whose best blacklist scores were fitted")
    identities: int = Field(description="blacklist identities they were scored against")
    best_score_mean: float
    best_score_sd: float
    threshold: float = Field(description="the threshold this null asks for at the tier's target")


class InDomainStatusOut(BaseModel):
    enabled: bool
    active: bool = Field(description="false below CALLVET_IN_DOMAIN_MIN_CALLS long recent calls")
    recent_calls: int = 0
    identities: int | None = None
    best_score_mean: float | None = None
    best_score_sd: float | None = None


class TierOut(BaseModel):
    tier: str
    target_far: float = Field(description="configured false alarms per search (CALLVET_ALARM_FAR, "
                              "CALLVET_REVIEW_FAR)")
    threshold: float
    n_effective: float = Field(description="independent comparisons one search amounts to")
    expected_far: float = Field(description="expected share of innocent searches reaching this tier")
    expected_detection: float = Field(description="expected share of enrolled callers (~10 s) reaching it")
    min_net_speech_s: float | None = Field(None, description="net speech this tier acts from")
    calibration_threshold: float | None = Field(
        None, description="the calibration's own threshold; set when CALLVET_OPENSET_IN_DOMAIN is on "
        "(the threshold in force is never below it)")
    in_domain: InDomainTierOut | None = Field(
        None, description="the in-domain null of recent calls behind this threshold (null: inactive)")


class SpoofOut(BaseModel):
    score: float | None = Field(description="calibrated spoof log-odds (higher = more likely spoofed)")
    flag: bool | None = Field(description="score above the operating point (CALLVET_SPOOF_FFR false "
                              "flags on genuine callers); null when the countermeasure could not run")
    kind: Literal["synthetic", "replay"] | None = Field(description="set on a flagged score")
    error: str | None = Field(None, description="why there is no score (e.g. spoof_missing)")


class SampleOut(BaseModel):
    sample_id: int
    identity_id: int
    from_call_id: str | None = Field(None, description="the call whose stored print was enrolled")
    net_speech_s: float
    duration_s: float
    sha256: str
    backend_id: str
    possible_duplicate_of: list[MatchOut] = Field(
        description="other identities this voice already matches above threshold (not refused: analysts "
        "decide whether to merge)")
    self_score: float | None = Field(description="best score against this identity's earlier prints")
    spoof: SpoofOut | None = Field(None, description="the countermeasure's result on this recording")


class DeleteOut(BaseModel):
    id: int
    label: str
    samples_removed: int


class IdentifyOut(BaseModel):
    spoof: SpoofOut = Field(description="synthetic-voice / replay countermeasure on the same speech")
    net_speech_s: float
    alarm: bool
    review: bool = Field(False, description="reached the review tier but not the alarm tier")
    threshold: float
    review_threshold: float | None = None
    tiers: dict[str, TierOut] | None = Field(None, description="alarm and review operating points of "
                                             "this search; null without an open-set calibration")
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


async def _call_ref(request: Request) -> str | None:
    """``{"call_id": ...}`` when the body is JSON (enrol from a call), else None (a multipart upload)."""
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        return None
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(status_code=422,
                            detail={"code": "bad_json", "message": "body is not JSON"}) from exc
    call_id = body.get("call_id") if isinstance(body, dict) else None
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 100:
        raise HTTPException(status_code=422, detail={
            "code": "invalid_call_id", "message": "JSON body must be {\"call_id\": \"<call id>\"}"})
    return call_id


@router.post("/v1/blacklist/identities/{identity_id}/samples", status_code=201, response_model=SampleOut,
             responses=ERRORS, openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": {"type": "object", "required": ["call_id"],
                                                 "properties": {"call_id": {"type": "string"}}}}}}})
def add_sample(
    identity_id: IntId,
    audio: UploadFile | None = File(None, description="WAV, or raw pcm16/mulaw (+ encoding, sample_rate)"),
    encoding: Literal["auto", "wav", "pcm16", "mulaw"] = Form("auto"),
    sample_rate: int | None = Form(None, ge=1, le=384_000, description="required for pcm16 and mulaw"),
    call_id: str | None = Depends(_call_ref),
    override_spoof: bool = Form(False, description="enrol even if the spoof countermeasure flags the "
                                "recording (needs override_reason; audited)"),
    override_reason: str = Form("", max_length=2000),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> dict[str, Any]:
    """Enrol one recording of this identity (multipart ``audio``), or the stored voiceprint of a past
    call (JSON ``{"call_id": ...}``); only voiceprints and SHA-256s are stored, never audio.

    A recording the spoof countermeasure flags is refused with 409 ``spoof_flagged`` (audited) unless
    ``override_spoof`` is true with an ``override_reason`` (audited as an override)."""
    if call_id is not None:
        vp = ctx.callprints.voiceprint(call_id)
        return blacklist_service(ctx).add_print(identity_id, vp, p.actor, call_id=call_id)
    if audio is None:
        raise HTTPException(status_code=422, detail={
            "code": "audio_required", "message": "send multipart audio, or JSON {\"call_id\": ...}"})
    data = _read_upload(audio, ctx.settings.max_upload_bytes)
    return blacklist_service(ctx).add_sample(
        identity_id, data, p.actor, spoof=(lambda: spoof_detector(ctx)) if ctx.settings.spoof else None,
        override_spoof=override_spoof,
        override_reason=override_reason, **_decode_kw(encoding, sample_rate))


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
    threshold: float = Field(description="alarm threshold in force for one identify request")
    calibrated: bool = False
    identities: int = 0
    prints: int = 0
    target_far: dict[str, float] | None = None
    identify: dict[str, TierOut] | None = Field(None, description="tiers for one identify request")
    call: dict[str, TierOut] | None = Field(None, description="tiers for a live call (its looks counted)")
    calibration: dict[str, Any] | None = None
    in_domain: InDomainStatusOut | None = Field(
        None, description="the in-domain null from recent calls (CALLVET_OPENSET_IN_DOMAIN; null when off)")
    kind: str = Field(description="exact or ivf")
    searchable_prints: int
    nprobe: int
    recall: RecallOut | None = Field(description="measured when the approximate index was built")
    generation: int
    ann_threshold: int
    opened: dict[str, Any] = Field(description="how this process opened the index (loaded or rebuilt, why)")
    unsearchable_prints_by_backend: dict[str, int] = Field(
        description="prints made by another encoder/back end: re-enrol them to make them searchable")
    reenrolment: dict[str, Any] | None = Field(
        None, description="identities with no print of the back end in force (invisible to every search "
        "until re-enrolled from the original recordings; prints cannot be converted, audio is not kept)")


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
    reason: str = Query(..., min_length=1, max_length=2000, pattern=r"\S",
                        description="why (kept in the audit log)"),
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
    return {**result.to_dict(), "spoof": spoof_result(ctx, analysis.speech)}
