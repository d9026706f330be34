"""Test plumbing for cases: a robot that claims a call over HTTP and places it over a real WebSocket,
speaking each answer with espeak-ng and reporting its recogniser's text, as a call robot does; and the
pieces of a call that resumes on another replica (issue 17: tests/test_call_resume.py, the cluster test
tests/test_cluster.py, the drain test), shared so that they stream and read call records the same way."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

__all__ = ["ENROL", "FIRST", "SECOND", "VOICE", "call_id_of", "case_wait", "checkpoint_of", "collect",
           "place_call",
           "send_media", "speech_8k", "start_frame", "stream_media"]

#: The resume tests' voice: enrolled on the blacklist (ENROL), then the caller of both halves of a call.
VOICE = "en-us+m3"
ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
FIRST = ("Hello, yes, this is me speaking. I applied for the card last week at the branch near my office, "
         "and I use my current card for groceries and fuel every single week of the year.")
SECOND = ("My employer is a logistics company on the river road, I have worked there for six years, and my "
          "salary is paid on the last working day of every month into the same account.")



def collect(ws: Any, events: list[dict[str, Any]]) -> asyncio.Task[None]:
    """A task that appends every JSON message the call server sends on ``ws`` to ``events`` until the
    socket closes, as a robot's reader does (await it after ``stop`` to read to the close)."""
    import websockets

    async def read() -> None:
        try:
            async for msg in ws:
                events.append(json.loads(msg))
        except websockets.ConnectionClosed:
            pass

    return asyncio.create_task(read())

def speech_8k(text: str, voice: str = VOICE) -> np.ndarray:
    """``text`` spoken at 8 kHz with half a second of silence before and one second after."""
    from speech import espeak

    x = espeak(text, voice, sample_rate=8000)
    return np.concatenate([np.zeros(4000, np.float32), x, np.zeros(8000, np.float32)])


def start_frame(params: dict[str, Any], call_sid: str) -> str:
    """A Twilio ``start`` for ``call_sid`` from a robot that runs its own recogniser (asr: robot)."""
    return json.dumps({"event": "start", "streamSid": "MZ" + call_sid, "start": {
        "streamSid": "MZ" + call_sid, "callSid": call_sid, "tracks": ["inbound"],
        "customParameters": {**params, "asr": "robot"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def send_media(ws: Any, audio: np.ndarray) -> None:
    """``audio`` as Twilio media frames at 5x real time: batches stay far below the analysis ring (6 s),
    whose overrun by a much faster robot drops speech depending on the batching (then net speech sums
    are not exact)."""
    from callvet.sim.calls import mulaw_encode

    for n, i in enumerate(range(0, len(audio), 160)):
        await ws.send(json.dumps({"event": "media", "media": {
            "track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n),
            "payload": base64.b64encode(mulaw_encode(audio[i:i + 160])).decode()}}))
        if n % 25 == 24:
            await asyncio.sleep(0.1)


async def stream_media(url: str, start: str, audio: np.ndarray, *, events: list[dict[str, Any]],
                       until: Callable[[], bool] | None = None, more: np.ndarray | None = None,
                       headers: dict[str, str] | None = None) -> None:
    """Stream ``audio`` as Twilio media, then end the call (``stop``) and read to the close. With
    ``until`` (a blocking function, run in a thread: it may kill the server), wait for it first: when it
    returns False the server has gone and the socket is read to its close, as a robot whose replica
    died sees it; when True, ``more`` audio follows on the same socket, then ``stop``."""
    import websockets

    async with websockets.connect(url, additional_headers=headers) as ws:
        reader = collect(ws, events)
        await ws.send(start)
        await send_media(ws, audio)
        if until is None or await asyncio.to_thread(until):
            if more is not None:
                await send_media(ws, more)
            await ws.send(json.dumps({"event": "stop", "stop": {}}))
        await asyncio.wait_for(reader, 120)


def checkpoint_of(db: Any, call_id: str) -> dict[str, Any] | None:
    """The call record's durable analysis state (``calls.checkpoint``), or None before the first."""
    from callvet.voice.call.tables import calls
    from sqlalchemy import select

    with db.connect() as conn:
        raw = conn.execute(select(calls.c.checkpoint).where(calls.c.id == call_id)).scalar()
    return json.loads(raw) if raw else None


def call_id_of(db: Any, call_sid: str) -> str | None:
    from callvet.voice.call.tables import calls
    from sqlalchemy import select

    with db.connect() as conn:
        return conn.execute(select(calls.c.id).where(calls.c.call_sid == call_sid)).scalar()


def case_wait(c: httpx.Client, h: dict[str, str], case_id: str, statuses: tuple[str, ...],
              timeout_s: float = 90) -> dict[str, Any]:
    """The case once its status is one of ``statuses`` (or as it is after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = c.get(f"/v1/cases/{case_id}", headers=h).json()
        if got["status"] in statuses or time.monotonic() > deadline:
            return got  # type: ignore[no-any-return]
        time.sleep(0.2)


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
        reader = collect(ws, events)
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
