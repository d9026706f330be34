"""Test plumbing for cases: a robot that claims a call over HTTP and places it over a real WebSocket,
speaking each answer with espeak-ng and reporting its recogniser's text, as a call robot does."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["place_call"]


async def place_call(claim: dict[str, Any], voice: str, respond: Callable[[dict[str, Any]], dict[str, Any]],
                     *, max_questions: int = 16, extra_speech: str | None = None,
                     timeout_s: float = 150) -> list[dict[str, Any]]:
    """Stream one call for ``claim`` (the body of ``POST /v1/robot/calls:claim``) with no API key: the
    one-time token in customParameters is the credential. Returns every event the server sent."""
    import websockets
    from callvet.sim.calls import mulaw_encode
    from speech import espeak

    events: list[dict[str, Any]] = []
    async with websockets.connect(claim["stream_url"]) as ws:

        async def read() -> None:
            try:
                async for msg in ws:
                    events.append(json.loads(msg))
            except websockets.ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        await ws.send(json.dumps({"event": "start", "streamSid": "MZ11", "start": {
            "streamSid": "MZ11", "callSid": "CA11", "tracks": ["inbound"],
            # This robot runs its own recogniser and sends every transcript (asr: robot).
            "customParameters": {**claim["custom_parameters"], "asr": "robot"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        chunk = 0

        async def audio(x: np.ndarray) -> None:
            nonlocal chunk
            for i in range(0, len(x), 160):
                chunk += 1
                await ws.send(json.dumps({"event": "media", "streamSid": "MZ11", "media": {
                    "track": "inbound", "chunk": str(chunk), "timestamp": str(20 * chunk),
                    "payload": base64.b64encode(mulaw_encode(x[i:i + 160])).decode()}}))
                if chunk % 50 == 0:
                    await asyncio.sleep(0)

        if extra_speech:
            await audio(np.zeros(4000, np.float32))
            await audio(espeak(extra_speech, voice, sample_rate=8000))
            await audio(np.zeros(8000, np.float32))
        asked = 0
        deadline = time.monotonic() + timeout_s
        while asked < max_questions and time.monotonic() < deadline:
            if any(e.get("event") in ("callvet.interview_result", "callvet.error") and
                   e.get("code") != "voiceprint_unavailable" for e in events):
                break
            questions = [e for e in events if e.get("event") == "callvet.question"]
            if len(questions) <= asked:
                if not questions and any(e.get("event") == "callvet.started" for e in events) and \
                        time.monotonic() > deadline - timeout_s + 20:
                    break  # no interview on this call
                await asyncio.sleep(0.02)
                continue
            q = questions[asked]
            asked += 1
            await ws.send(json.dumps({"event": "callvet.question", "question_id": q["question_id"],
                                      "text": q["text"], "ended_at_s": chunk * 0.02}))
            reply = respond(q)
            text = reply["transcript"]
            await audio(np.zeros(int(min(reply["timing"]["delay_s"], 3.0) * 8000), np.float32))
            await audio(espeak(text, voice, sample_rate=8000))
            await ws.send(json.dumps({"event": "callvet.transcript", "text": text, "final": True,
                                      "question_id": q["question_id"]}))
            await audio(np.zeros(int(1.2 * 8000), np.float32))
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZ11", "stop": {}}))
        await asyncio.wait_for(reader, 180)
    return events
