"""Who is streaming: the robot's key for the media-stream WebSockets, from a header, the URL or the stream.

Twilio's ``<Stream>`` cannot set headers, and a key in the URL lands in every access log on the way, so a
robot may instead put its key in ``start.customParameters.token`` (Twilio ``<Parameter name="token">``)
or in mod_audio_fork's metadata (``customParameters.token`` or ``token``). Then the socket is accepted,
the first frames (Twilio's ``connected``, then ``start``; fork's metadata) are read before anything is
recorded, the key is taken out of them, and the call server gets the frames without it: the key is never
stored with the call or logged. At most :data:`MAX_EARLY_FRAMES` frames within :data:`EARLY_TIMEOUT_S`
are read this way; a socket that sends no key in them is refused (1008) as before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import principal_from_token, ws_token_from
from callvet.core.auth import Principal
from fastapi import WebSocket

__all__ = ["EARLY_TIMEOUT_S", "MAX_EARLY_FRAMES", "SECRET_PARAMS", "Replaying", "stream_principal"]

MAX_EARLY_FRAMES = 3
EARLY_TIMEOUT_S = 10.0
#: Parameter names that carry a secret and are never kept with a call.
SECRET_PARAMS = frozenset({"token", "api_key", "key", "authorization"})


class Replaying:
    """A transport that first hands out frames read early, then reads on from ``inner``."""

    def __init__(self, inner: Any, early: list[str | bytes]) -> None:
        self.inner = inner
        self.early = list(early)

    async def receive(self) -> str | bytes | None:
        if self.early:
            return self.early.pop(0)
        return await self.inner.receive()  # type: ignore[no-any-return]

    async def send_text(self, text: str) -> None:
        await self.inner.send_text(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


def _take_token(params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    found = None
    for k in list(params):
        if str(k).lower() in SECRET_PARAMS:
            v = params.pop(k)
            if found is None and isinstance(v, str):
                found = v
    return found


def _strip(frame: str | bytes, protocol: str) -> tuple[str | bytes, str | None, bool]:
    """The frame without its key, the key, and whether the start frame has been seen."""
    if not isinstance(frame, str):
        return frame, None, True
    try:
        msg = json.loads(frame)
    except ValueError:
        return frame, None, True
    if not isinstance(msg, dict):
        return frame, None, True
    if protocol == "twilio":
        if msg.get("event") != "start":
            return frame, None, msg.get("event") != "connected"
        start = msg.get("start")
        token = _take_token(start.get("customParameters")) if isinstance(start, dict) else None
    else:
        token = _take_token(msg.get("customParameters")) or _take_token(msg.get("params"))
        top = _take_token(msg)
        token = token or top
    return json.dumps(msg), token, True


async def stream_principal(ws: WebSocket, ctx: AppContext, transport: Any,
                           protocol: str) -> tuple[Principal | None, Replaying]:
    """Authenticate an accepted stream socket; the returned transport replays what was read early."""
    token = ws_token_from(ws)
    if token:
        return principal_from_token(ctx, token), Replaying(transport, [])
    early: list[str | bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EARLY_TIMEOUT_S
    while len(early) < MAX_EARLY_FRAMES:
        try:
            frame = await asyncio.wait_for(transport.receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            break
        if frame is None:
            break
        frame, token, done = _strip(frame, protocol)
        early.append(frame)
        if token or done:
            break
    return principal_from_token(ctx, token), Replaying(transport, early)
