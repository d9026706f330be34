"""The call session without HTTP: an in-memory transport, the real Silero VAD, the observer seam,
lag shedding and back-pressure."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callserver import QueueTransport
from callvet.core.db import Database
from callvet.sim.calls import mulaw_encode
from callvet.voice.call.observer import (
    AnswerEnd,
    AnswerStart,
    BaseObserver,
    CallInfo,
    QuestionAsked,
    Transcript,
)
from callvet.voice.call.pipeline import CallConfig
from callvet.voice.call.session import CallServer, default_vad_factory
from speech import espeak

START = json.dumps({"event": "start", "start": {
    "streamSid": "MZ5", "callSid": "CA5", "customParameters": {"application_id": "app-s"},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
STOP = json.dumps({"event": "stop"})


def media(k: int, x: np.ndarray) -> str:
    return json.dumps({"event": "media", "media": {"track": "inbound", "chunk": str(k + 1),
                                                   "payload": base64.b64encode(mulaw_encode(x)).decode()}})


async def feed(t: QueueTransport, x: np.ndarray, *, speed: float | None = None,
               inject: dict[int, list[str]] | None = None) -> None:
    """Audio as 20 ms media frames, paced at ``speed`` x real time (None: as fast as possible)."""
    await t.inbox.put(START)
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(x), 160)):
        for m in (inject or {}).get(k, []):
            await t.inbox.put(m)
        await t.inbox.put(media(k, x[i : i + 160]))
        if speed:
            await asyncio.sleep(max(0.0, t0 + 0.02 * (k + 1) / speed - time.perf_counter()))
        elif k % 10 == 0:
            await asyncio.sleep(0)
    await t.inbox.put(STOP)


def silence(s: float) -> np.ndarray:
    return np.zeros(int(s * 8000), np.float32)


class Recorder(BaseObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_start(self, call: CallInfo) -> None:
        self.calls.append(("start", call))

    def on_question(self, call: CallInfo, question: QuestionAsked) -> None:
        self.calls.append(("question", question))

    def on_transcript(self, call: CallInfo, transcript: Transcript) -> None:
        self.calls.append(("transcript", transcript))

    async def on_answer_start(self, call: CallInfo, answer: AnswerStart) -> None:
        self.calls.append(("answer_start", answer))
        await asyncio.sleep(0)

    def on_answer_end(self, call: CallInfo, answer: AnswerEnd) -> list[dict[str, Any]]:
        self.calls.append(("answer_end", answer))
        return [{"event": "callvet.question", "question_id": f"q{answer.index + 1}", "text": "next?"}]

    def on_stop(self, call: CallInfo, reason: str) -> None:
        self.calls.append(("stop", reason))


class Broken(BaseObserver):
    def on_answer_start(self, call: CallInfo, answer: AnswerStart) -> None:
        raise ValueError("boom")


def _server(db: Database, **kw: Any) -> CallServer:
    return CallServer(db, cfg=kw.pop("cfg", CallConfig(workers=2)), scoring=None, **kw)


def test_observer_seam_timing_prosody_and_failures(sqlite_db: Database) -> None:
    rec = Recorder()
    server = _server(sqlite_db, observers=[("rec", lambda info: rec), ("broken", lambda info: Broken()),
                                           ("none", lambda info: None)])
    a1 = espeak("I work as a nurse at the city hospital.", sample_rate=8000)
    a2 = espeak("About four years now, since twenty twenty.", sample_rate=8000)
    x = np.concatenate([silence(1.0), a1, silence(1.5), a2, silence(1.0)])
    at_end_of_a1 = int((1.0 + len(a1) / 8000) / 0.02)
    default_vad_factory(8000, 700).feed(a1)  # warm the model so timing is not a cold start's
    q1 = json.dumps({"event": "callvet.question", "question_id": "q1", "text": "What is your job?",
                     "ended_at_s": 0.4})
    tr = json.dumps({"event": "callvet.transcript", "text": "i work as a nurse", "final": True})
    t = QueueTransport()

    async def go() -> None:
        await asyncio.gather(server.handle(t, "twilio", "robot:test"),
                             feed(t, x, speed=3.0, inject={0: [q1], at_end_of_a1: [tr]}))

    asyncio.run(go())
    server.close()
    assert t.closed == (1000, "stop")
    assert [e["code"] for e in t.of("callvet.error")] == ["voiceprint_unavailable", "observer_failed"]
    kinds = [k for k, _ in rec.calls]
    assert kinds == ["start", "question", "answer_start", "transcript", "answer_end", "answer_start",
                     "answer_end", "stop"]
    starts = [v for k, v in rec.calls if k == "answer_start"]
    ends: list[AnswerEnd] = [v for k, v in rec.calls if k == "answer_end"]
    assert starts[0].question_id == "q1" and starts[0].delay_s == pytest.approx(1.0 - 0.4, abs=0.25)
    assert starts[1].question_id is None and starts[1].delay_s == pytest.approx(1.5, abs=0.3)
    assert ends[0].transcripts == ("i work as a nurse",) and ends[1].transcripts == ()
    assert ends[0].end_s - ends[0].start_s == pytest.approx(len(a1) / 8000, abs=0.35)
    p = ends[0].prosody
    assert p["delay_s"] == pytest.approx(starts[0].delay_s, abs=1e-3)
    assert p["syllables"] > 5 and p["pitch_mean_hz"] > 60 and p["speech_rate"] > 1
    assert [e["question_id"] for e in t.of("callvet.question")] == ["q2", "q3"]
    assert len(t.of("callvet.answer_end")) == 2
    stored = server.store.get(t.of("callvet.started")[0]["call_id"])
    assert stored["application_id"] == "app-s" and stored["state"] == "stopped"
    assert [e["kind"] for e in stored["events"]].count("observer") == 2
    assert stored["stats"]["answers"] == 2


class SlowVad:
    """The real VAD on a machine ``factor`` x slower than real time."""

    def __init__(self, factor: float) -> None:
        self.vad = default_vad_factory(8000, 700)
        self.factor = factor

    def feed(self, chunk: np.ndarray) -> list[Any]:
        time.sleep(self.factor * len(chunk) / 8000)
        return self.vad.feed(chunk)


def test_lag_sheds_audio_and_tells_the_robot(sqlite_db: Database) -> None:
    cfg = CallConfig(workers=1, max_lag_s=0.3)
    server = _server(sqlite_db, cfg=cfg, vad_factory=lambda sr, ms: SlowVad(1.5))
    t = QueueTransport()
    x = espeak("I bought the card last spring and I use it for groceries.", sample_rate=8000)[: 8000 * 2]

    async def go() -> None:
        await asyncio.gather(server.handle(t, "twilio", "robot:test"), feed(t, x, speed=1.0))

    asyncio.run(go())
    server.close()
    lags = t.of("callvet.lag")
    assert lags and lags[0]["lag_s"] > 0.3 and lags[0]["max_lag_s"] == 0.3
    stored = server.store.get(t.of("callvet.started")[0]["call_id"])
    assert stored["stats"]["shed_s"] > 0 and stored["stats"]["max_batch_s"] <= 1.0
    assert any(e["kind"] == "lag" for e in stored["events"])


def test_fast_client_gets_back_pressure_not_shedding(sqlite_db: Database) -> None:
    cfg = CallConfig(workers=1, max_lag_s=1000.0, max_pending_s=0.3)
    server = _server(sqlite_db, cfg=cfg, vad_factory=lambda sr, ms: SlowVad(0.2))
    t = QueueTransport()
    x = np.concatenate([espeak("yes that is right", sample_rate=8000), silence(2.0)])

    async def go() -> None:
        await asyncio.gather(server.handle(t, "twilio", "robot:test"), feed(t, x))

    asyncio.run(go())
    server.close()
    stats = server.store.get(t.of("callvet.started")[0]["call_id"])["stats"]
    assert stats["shed_s"] == 0 and stats["max_batch_s"] <= 0.35 and not t.of("callvet.lag")
    assert stats["frames"] == int(np.ceil(len(x) / 160))


def test_disconnect_before_start_and_idle_timeout(sqlite_db: Database, tmp_path: Path) -> None:
    server = _server(sqlite_db, cfg=CallConfig(workers=1, idle_timeout_s=0.2))
    t1, t2 = QueueTransport(), QueueTransport()

    async def go() -> None:
        await t1.inbox.put(None)
        await server.handle(t1, "twilio", "robot:test")
        await t2.inbox.put(START)
        await server.handle(t2, "twilio", "robot:test")

    asyncio.run(go())
    server.close()
    (only,) = server.store.list(limit=5)  # a socket gone before start leaves no record (issue 9)
    assert only["state"] == "failed" and only["close_code"] == 1008 and only["end_reason"] == "idle_timeout"
    assert t1.closed is None and t2.closed == (1008, "idle_timeout")


def test_calls_beyond_capacity_are_turned_away(sqlite_db: Database) -> None:
    server = _server(sqlite_db, cfg=CallConfig(workers=1, max_calls=1))
    t1, t2 = QueueTransport(), QueueTransport()

    async def go() -> None:
        first = asyncio.create_task(server.handle(t1, "twilio", "robot:test"))
        await t1.inbox.put(START)
        while not t1.of("callvet.started"):
            await asyncio.sleep(0.01)
        assert await server.handle(t2, "twilio", "robot:test") is None
        await t1.inbox.put(STOP)
        await first

    asyncio.run(go())
    server.close()
    assert t2.closed == (1013, "capacity") and t2.sent[0]["code"] == "capacity"
    assert t1.closed == (1000, "stop") and server.store.count() == 1
