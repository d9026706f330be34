"""Call server endpoints: the two streaming WebSockets and the call records.

``/v1/calls/stream`` speaks Twilio Media Streams, ``/v1/calls/fork`` FreeSWITCH mod_audio_fork; both need
a robot key (``Authorization: Bearer``, ``?token=`` or ``customParameters.token``, see
:mod:`callvet.api.streamauth`) and close with 1008 before any audio otherwise.
All call logic is in :mod:`callvet.voice.call`; this module only adapts Starlette's WebSocket to its
transport and maps roles.
"""

from __future__ import annotations

import contextlib
from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import Offset, get_ctx, require
from callvet.api.schemas import CallList
from callvet.api.streamauth import stream_principal
from callvet.core.auth import Principal, Role
from callvet.voice.call.session import CallServer
from fastapi import APIRouter, Depends, Query, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

__all__ = [
    "StarletteTransport", "call_server", "callprint_records", "callprint_store", "reuse_summary", "router",
]

router = APIRouter(tags=["calls"])


def _engine(ctx: AppContext) -> Any:
    from callvet.voice.engine import VoiceEngine

    return ctx.service("voice", lambda c: VoiceEngine.from_settings(c.settings))


def _blacklist(ctx: AppContext) -> Any:
    from callvet.voice.blacklist import Blacklist

    engine = _engine(ctx)
    return ctx.service("blacklist", lambda c: Blacklist.from_settings(c.settings, c.db, engine))


def callprint_store(ctx: AppContext) -> Any:
    """The process's call-print store (voice reuse across applicants), built on the voice engine."""
    from callvet.voice.callprints import CallPrintStore

    engine = _engine(ctx)
    return ctx.service("callprints", lambda c: CallPrintStore.from_settings(c.settings, c.db, engine))


def callprint_records(ctx: AppContext) -> Any:
    """Call-print records without the engine (reads, deletion, purge)."""
    from callvet.voice.callprints import CallPrintRecords

    return ctx.service("callprint_records", lambda c: CallPrintRecords(c.db))

def _spoof(ctx: AppContext) -> Any:
    """The spoof countermeasure, or None when it cannot be built or ``CALLVET_SPOOF=0`` turns it off
    for calls (calls then carry ``spoof.error = spoof_unavailable``; the voiceprint still runs)."""
    from callvet.api.routes.blacklist import spoof_detector
    from callvet.core.errors import CallvetError

    if not ctx.settings.spoof:
        return None
    try:
        return spoof_detector(ctx)
    except CallvetError:
        return None


def call_server(ctx: AppContext) -> CallServer:
    """The process's call server (one worker pool for all calls)."""

    def build(c: AppContext) -> CallServer:
        from callvet.api.routes.cases import case_service
        from callvet.voice.call.scoring import VoiceScoring

        return CallServer(c.db, scoring=lambda: VoiceScoring(_engine(c), _blacklist(c),
                                                             callprints=callprint_store(c), spoof=_spoof(c)),
                          admit=lambda call_id, params: case_service(c).admit_stream(call_id, params))

    return ctx.service("calls", build)


class StarletteTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive(self) -> str | bytes | None:
        try:
            msg = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        if msg.get("text") is not None:
            return str(msg["text"])
        if msg.get("bytes") is not None:
            return bytes(msg["bytes"])
        return None

    async def send_text(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            await self.ws.close(code=code, reason=reason)


async def _serve(ws: WebSocket, protocol: str) -> None:
    ctx: AppContext = ws.app.state.ctx
    await ws.accept()
    principal, transport = await stream_principal(ws, ctx, StarletteTransport(ws), protocol)
    if principal is None or not principal.has(Role.ROBOT):
        code = "unauthenticated" if principal is None else "forbidden"
        try:
            await ws.send_json({"event": "callvet.error", "code": code,
                                "message": "a robot API key is required (Authorization: Bearer, ?token= "
                                "or customParameters.token)"})
            await ws.close(code=1008, reason=code)
        except (WebSocketDisconnect, RuntimeError):
            pass
        return
    await call_server(ctx).handle(transport, protocol, principal.actor)


@router.websocket("/v1/calls/stream")
async def stream(ws: WebSocket) -> None:
    """Twilio Media Streams (JSON text frames, base64 mu-law 8 kHz)."""
    await _serve(ws, "twilio")


@router.websocket("/v1/calls/fork")
async def fork(ws: WebSocket) -> None:
    """FreeSWITCH mod_audio_fork (JSON metadata, then binary 16-bit LE PCM at 8 or 16 kHz)."""
    await _serve(ws, "fork")


@router.get("/v1/calls", response_model=CallList)
def list_calls(
    alarm: bool | None = Query(None, description="only calls that raised (true) or never raised an alarm"),
    application_id: str | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    calls = call_server(ctx).store.list(alarm=alarm, application_id=application_id, limit=limit,
                                        offset=offset)
    return {"calls": calls}


@router.get("/v1/calls/{call_id}")
def get_call(
    call_id: str,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.ANALYST, Role.AUDITOR)),
) -> dict[str, Any]:
    out = call_server(ctx).store.get(call_id)
    out.update(reuse_summary(out.get("events") or []))
    out["voiceprint_store"] = callprint_records(ctx).get(call_id)
    return out


def reuse_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """``voice_reuse`` over the call's verdicts and the other calls found (best score per call)."""
    found: dict[str, dict[str, Any]] = {}
    reuse = False
    for ev in events:
        data = ev.get("data") or {}
        if ev.get("kind") != "verdict" or not data.get("voice_reuse"):
            continue
        reuse = True
        for m in data.get("reuse_matches") or []:
            cur = found.get(m.get("call_id"))
            if cur is None or m.get("score", 0) > cur.get("score", 0):
                found[m.get("call_id")] = m
    return {"voice_reuse": reuse,
            "reuse_matches": sorted(found.values(), key=lambda m: -float(m.get("score") or 0))}


@router.delete("/v1/calls/{call_id}/voiceprint")
def delete_call_voiceprint(
    call_id: str,
    reason: str = Query(..., min_length=1, max_length=500),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> dict[str, Any]:
    """Erase the call's stored voiceprint (the call record stays), audited ``callprint.delete``."""
    return callprint_records(ctx).delete(call_id, p.actor, reason)


@router.delete("/v1/calls/{call_id}", status_code=204)
def delete_call(
    call_id: str,
    reason: str = Query(..., min_length=1, max_length=500),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.ANALYST)),
) -> None:
    from callvet.core.errors import NotFound

    with contextlib.suppress(NotFound):
        callprint_records(ctx).delete(call_id, p.actor, reason)
    call_server(ctx).store.delete(call_id, p.actor, reason)
