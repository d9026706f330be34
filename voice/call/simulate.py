"""A call robot in a box: streams audio to the call server exactly as Twilio or mod_audio_fork would.

Used by ``callvet call simulate``, the tests and the benchmark. Audio goes out in 20 ms frames, paced
at real time when asked (frame k leaves once its audio would have been spoken, t0 + 20 ms x (k+1)),
otherwise as fast as the socket takes it. Every received event is kept with its arrival time, so the
latency of a verdict is measured from when the last speech sample it used left the client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from callvet.voice.g711 import mulaw_encode

__all__ = ["SimResult", "mulaw_encode", "stream_call"]

FRAME_S = 0.02


@dataclass
class SimResult:
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    send_slip_s: float = 0.0
    call_id: str | None = None

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e.get("event") == name]

    def latencies(self, name: str = "callvet.voiceprint") -> list[float]:
        """Seconds from sending the frame holding an event's last speech sample to receiving it."""
        out = []
        for t, e in self.events:
            if e.get("event") != name or e.get("audio_t_s") is None or not self.send_times:
                continue
            k = max(0, min(len(self.send_times) - 1, int(np.ceil(e["audio_t_s"] / FRAME_S - 1e-6)) - 1))
            out.append(t - self.send_times[k])
        return out


def _frames(x: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    n = round(FRAME_S * sample_rate)
    return [x[i : i + n] for i in range(0, len(x), n)]


def _start_messages(protocol: str, stream_sid: str, sample_rate: int, params: dict[str, str]) -> list[str]:
    if protocol == "twilio":
        return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}), json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": stream_sid,
                      "callSid": "CA" + uuid.uuid4().hex, "tracks": ["inbound"],
                      "customParameters": params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        })]
    return [json.dumps({"uuid": stream_sid, "sampleRate": sample_rate, **params})]


def _stop_messages(protocol: str, stream_sid: str, n_frames: int) -> list[str]:
    if protocol == "twilio":
        return [json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": "end"}}),
                json.dumps({"event": "stop", "sequenceNumber": str(n_frames + 3), "streamSid": stream_sid,
                            "stop": {}})]
    return [json.dumps({"event": "stop"})]


def _media(protocol: str, stream_sid: str, k: int, fr: np.ndarray) -> str | bytes:
    if protocol == "twilio":
        return json.dumps({
            "event": "media", "sequenceNumber": str(k + 2), "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(k + 1), "timestamp": str(k * 20),
                      "payload": base64.b64encode(mulaw_encode(fr)).decode()},
        })
    return (np.clip(fr, -1, 1) * 32767).astype("<i2").tobytes()


def _order(n: int, reorder: int, seed: int) -> list[int]:
    """Frame send order: shuffled within windows of ``reorder`` frames (Telnyx-style disorder)."""
    order = list(range(n))
    if reorder > 1:
        rng = random.Random(seed)
        for i in range(0, n, reorder):
            block = order[i : i + reorder]
            rng.shuffle(block)
            order[i : i + reorder] = block
    return order


async def _read(ws: Any, res: SimResult, on_event: Callable[[dict[str, Any]], None] | None) -> None:
    import websockets

    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                continue
            ev = json.loads(msg)
            res.events.append((time.perf_counter(), ev))
            if ev.get("event") == "mark":
                res.marks.append(ev["mark"]["name"])
            if ev.get("event") == "callvet.started":
                res.call_id = ev.get("call_id")
            if on_event is not None:
                on_event(ev)
    except websockets.ConnectionClosed:
        pass


async def _send_audio(ws: Any, res: SimResult, encoded: list[str | bytes], order: list[int],
                      pending: dict[float, list[str | bytes]], pace: float | None,
                      disconnect_after_s: float | None) -> bool:
    """Sends the media frames (paced when ``pace``), injecting ``pending`` messages at their audio
    time; True when it stopped early to disconnect."""
    t0 = time.perf_counter()
    for pos, k in enumerate(order):
        if pace:
            target = t0 + FRAME_S * (pos + 1) / pace
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                res.send_slip_s = max(res.send_slip_s, -delay)
        while pending and next(iter(pending)) <= pos * FRAME_S:
            for m in pending.pop(next(iter(pending))):
                await ws.send(m)
        await ws.send(encoded[pos])
        res.send_times[k] = time.perf_counter()
        if disconnect_after_s is not None and (pos + 1) * FRAME_S >= disconnect_after_s:
            return True
    return False


async def _abort(ws: Any, rtask: asyncio.Task[None], res: SimResult) -> SimResult:
    """Drops the connection abruptly (no close handshake), once what was sent has left."""
    for _ in range(200):
        if not ws.transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.01)
    ws.transport.abort()
    rtask.cancel()
    res.close_code = 1006
    return res


async def stream_call(
    url: str,
    samples: np.ndarray,
    sample_rate: int,
    *,
    protocol: str = "twilio",
    realtime: bool = False,
    speed: float | None = None,
    params: dict[str, str] | None = None,
    token: str | None = None,
    reorder: int = 0,
    seed: int = 0,
    disconnect_after_s: float | None = None,
    before_audio: list[str | bytes] | None = None,
    at_audio_s: dict[float, list[str | bytes]] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    close_timeout_s: float = 60.0,
    open_timeout_s: float = 30.0,
) -> SimResult:
    """Stream ``samples`` as one call and collect what the server sends back.

    ``speed`` paces at that many times real time (``realtime`` is speed 1); ``reorder`` shuffles
    media frames within windows of that many frames (Telnyx-style disorder);
    ``disconnect_after_s`` drops the connection abruptly after that much audio; ``before_audio`` and
    ``at_audio_s`` inject raw messages (bad input, callvet.question ...) at those points.
    """
    import websockets

    headers = {"Authorization": f"Bearer {token}"} if token else None
    res = SimResult()
    params = dict(params or {})
    if protocol == "twilio" and sample_rate != 8000:
        raise ValueError("Twilio streams 8 kHz mu-law; resample first")
    frames = _frames(np.asarray(samples, dtype=np.float32), sample_rate)
    async with websockets.connect(url, additional_headers=headers, max_size=1 << 22, compression=None,
                                  open_timeout=open_timeout_s, close_timeout=5) as ws:
        rtask = asyncio.create_task(_read(ws, res, on_event))
        stream_sid = "MZ" + uuid.uuid4().hex
        for m in [*_start_messages(protocol, stream_sid, sample_rate, params), *(before_audio or [])]:
            await ws.send(m)
        order = _order(len(frames), reorder, seed)
        pending = dict(sorted((at_audio_s or {}).items()))
        encoded = [_media(protocol, stream_sid, k, frames[k]) for k in order]
        res.send_times = [0.0] * len(frames)
        pace = speed or (1.0 if realtime else None)
        if await _send_audio(ws, res, encoded, order, pending, pace, disconnect_after_s):
            return await _abort(ws, rtask, res)
        for msgs in pending.values():
            for m in msgs:
                await ws.send(m)
        for m in _stop_messages(protocol, stream_sid, len(frames)):
            await ws.send(m)
        try:
            await asyncio.wait_for(rtask, close_timeout_s)
        except TimeoutError:
            rtask.cancel()
        if ws.close_code is not None:
            res.close_code = ws.close_code
            res.close_reason = ws.close_reason or ""
    return res
