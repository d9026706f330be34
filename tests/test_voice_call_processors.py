"""Each processor of the call pipeline on its own, on a fake clock (no server, no models, no sockets)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from callvet.voice.call.audioqueue import AudioQueue
from callvet.voice.call.control import CallControl
from callvet.voice.call.frames import (
    AnswerEnded,
    AnswerStarted,
    AudioFrame,
    CallEnded,
    CallStarted,
    ClientEventFrame,
    DtmfFrame,
    DtmfRecord,
    ErrorFrame,
    LagFrame,
    MarkEcho,
    MarkFrame,
    ObserverEvent,
    QuestionAsked,
    QuestionRecord,
    ScoringFailed,
    StopFrame,
    Transcript,
    VerdictReady,
)
from callvet.voice.call.observer import BaseObserver, CallInfo
from callvet.voice.call.pipeline import CallConfig
from callvet.voice.call.processors import (
    AnswerContext,
    CallContext,
    FrameProcessor,
    Observers,
    Output,
    Recorder,
    StateChanged,
    link,
)
from callvet.voice.call.serializers import ForkSerializer, TwilioSerializer
from callvet.voice.call.state import CallState
from callvet.voice.g711 import mulaw_encode


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


class Collect(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Any] = []

    async def process(self, frame: Any) -> None:
        self.frames.append(frame)

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]


def _ctx(clock: FakeClock | None = None, **cfg: Any) -> CallContext:
    cfg.setdefault("max_lag_s", 1.0)
    ctx = CallContext("c1", "twilio", "robot:t", CallConfig(**cfg), clock or FakeClock())
    ctx.sample_rate = 8000
    ctx.info = CallInfo("c1", "twilio", "MZ", "CA", "app-1", None, 8000, {})
    return ctx


def _frame(k: int) -> AudioFrame:
    return AudioFrame(mulaw_encode(np.zeros(160, np.float32)), "mulaw", 8000, k)


def test_audio_queue_sheds_only_when_the_fake_clock_says_the_call_is_behind() -> None:
    async def go() -> tuple[AudioQueue, Collect, Collect]:
        results = []
        for step in (0.0, 0.02):  # a frozen clock (no time passes) vs real time with nothing processed
            clock = FakeClock()
            ctx = _ctx(clock)
            ctx.sm.to(CallState.STARTED)
            q, out = AudioQueue(ctx, ThreadPoolExecutor(1)), Collect()
            link(q, out)
            for k in range(200):  # 4 s of audio, no analysis attached: nothing is processed
                await q.process(_frame(k))
                clock.t += step
            results.append((q, out))
        return results[0][1], results[1][0], results[1][1]

    frozen, q, out = asyncio.run(go())
    assert [type(f) for f in frozen.frames] == [StateChanged]  # never behind on a frozen clock
    assert out.frames[0] == StateChanged(CallState.STREAMING)
    lags = out.of(LagFrame)
    # behind by > 1 s first after 1.02 s; then at most one lag event a second of audio
    assert len(lags) == 3 and lags[0].t_s == pytest.approx(1.04) and lags[0].max_lag_s == 1.0
    # nothing audio is lost unaccounted: shed + still waiting = received; waiting never exceeds the bound
    waiting = q.ctx.received - round(q.shed_s * 8000)
    assert q.ctx.received == 200 * 160 and 0.5 * 8000 <= waiting <= (1.0 + 0.02) * 8000
    assert q.lag_events == 3 and q.frames == 200 and q.processed_s == pytest.approx(q.shed_s)


class StubAnalysis:
    """Stands in for the worker stage: records what it was given, returns canned outputs."""

    vad_line = None

    def __init__(self, outs: list[Any]) -> None:
        self.outs = outs
        self.seen: list[int] = []
        self.processor = type("P", (), {"net_speech_s": 0.0, "watch": None})()

    def run_bytes(self, data: bytes, encoding: str, shed_s: float) -> list[Any]:
        self.seen.append(len(data))
        outs, self.outs = self.outs, []
        return outs

    def finish(self) -> list[Any]:
        return [ScoringFailed("voiceprint_failed", "boom")]


def test_audio_queue_echoes_marks_after_their_audio_and_maps_scoring_failures() -> None:
    async def go() -> tuple[AudioQueue, Collect, StubAnalysis]:
        ctx = _ctx(min_batch_s=0.06)
        ctx.sm.to(CallState.STARTED)
        q, out = AudioQueue(ctx, ThreadPoolExecutor(1)), Collect()
        link(q, out)
        stub = StubAnalysis([AnswerStarted(1, 0.1)])
        q.attach(stub)  # type: ignore[arg-type]
        await q.process(_frame(0))
        await q.process(MarkFrame("m1"))  # after 20 ms of audio, below one batch: waits for it
        assert not out.of(MarkEcho)
        for k in range(1, 4):
            await q.process(_frame(k))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if out.of(MarkEcho):
                break
        await q.finish()
        return q, out, stub

    q, out, stub = asyncio.run(go())
    kinds = [type(f) for f in out.frames]
    assert kinds.index(AnswerStarted) < kinds.index(MarkEcho)  # the mark waits for the audio before it
    assert sum(stub.seen) == 4 * 160 and q.processed == 640
    (err,) = out.of(ErrorFrame)
    assert err.code == "voiceprint_failed" and err.record


def test_answer_context_measures_delay_from_the_question_then_from_the_last_answer() -> None:
    async def go() -> Collect:
        ctx = _ctx()
        a, out = AnswerContext(ctx), Collect()
        link(a, out)
        await a.process(QuestionAsked("q1", "Your job?", 0.4))
        await a.process(Transcript("noise before", True, None))
        await a.process(AnswerStarted(1, 1.0))
        await a.process(Transcript("a nurse", True, None))
        await a.process(Transcript("a nur", False, None))
        await a.process(AnswerEnded(1, 1.0, 2.5, {"speech_s": 1.2}))
        await a.process(AnswerStarted(2, 3.0))
        await a.process(AnswerEnded(2, 3.0, 3.5, {}))
        return out

    out = asyncio.run(go())
    s1, s2 = out.of(AnswerStarted)
    e1, e2 = out.of(AnswerEnded)
    assert (s1.delay_s, s1.question_id) == (pytest.approx(0.6), "q1")
    assert e1.transcripts == ("a nurse",) and e1.prosody == {"speech_s": 1.2, "delay_s": 0.6}
    assert (s2.delay_s, s2.question_id, e2.question_id) == (pytest.approx(0.5), None, None)


class Asker(BaseObserver):
    def on_answer_end(self, call: CallInfo, answer: AnswerEnded) -> list[dict[str, Any]]:
        return [{"event": "callvet.question", "question_id": "q2", "text": "Since when?",
                 "answer_type": "date"}]


class Broken(BaseObserver):
    async def on_verdict(self, call: CallInfo, verdict: dict[str, Any]) -> None:
        raise ValueError("boom")


def test_observers_pass_the_frame_on_first_then_their_events_and_drop_a_failing_one() -> None:
    async def go() -> tuple[Observers, Collect, CallContext]:
        ctx = _ctx()
        obs, out = Observers(ctx), Collect()
        obs.observers = [("asker", Asker()), ("broken", Broken())]
        link(obs, out)
        await obs.process(AnswerEnded(1, 1.0, 2.0, {}))
        await obs.process(VerdictReady({"alarm": False}, 3.0))
        await obs.process(VerdictReady({"alarm": True}, 6.0))
        await obs.process(CallEnded("stop"))
        return obs, out, ctx

    obs, out, ctx = asyncio.run(go())
    kinds = [type(f).__name__ for f in out.frames]
    assert kinds == ["AnswerEnded", "ObserverEvent", "VerdictReady", "ErrorFrame", "VerdictReady",
                     "CallEnded"]
    assert out.of(ObserverEvent)[0].observer == "asker"
    assert out.of(ErrorFrame)[0].code == "observer_failed"
    assert [n for n, _ in obs.observers] == ["asker"]
    assert ctx.asr_hints == {"q2": "date"} and ctx.asr_prompts == {"q2": "Since when?"}


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **kw: self.calls.append((name, a))


def test_recorder_creates_the_row_with_the_first_record_and_counts_every_error() -> None:
    store = FakeStore()

    async def go() -> Recorder:
        ctx = _ctx()
        rec = Recorder(ctx, store, ThreadPoolExecutor(1))
        await rec.process(ErrorFrame("idle_timeout", "x", 1008, record=False))
        assert not rec.recorded and ctx.errors == 1
        await rec.process(DtmfRecord("5", 1.5))
        await rec.process(QuestionRecord(QuestionAsked("q1", "t", 2.0), 2.1))
        await rec.process(StateChanged(CallState.STREAMING))
        await rec.process(MarkEcho("m"))  # not a timeline entry
        await rec.flush()
        return rec

    asyncio.run(go())
    assert [(n, a[1] if len(a) > 1 else None) for n, a in store.calls] == [
        ("create", "twilio"), ("add_event", "dtmf"), ("add_event", "question"),
        ("set_state", CallState.STREAMING)]


class ListTransport:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[str] = []
        self.fail = fail

    async def send_text(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.sent.append(text)


def test_output_speaks_the_protocol_and_stops_once_the_peer_is_gone() -> None:
    async def go() -> tuple[ListTransport, ListTransport, CallContext]:
        twilio, fork = ListTransport(), ListTransport()
        ser = TwilioSerializer()
        ser.stream_sid = "MZ9"
        for t, s in ((twilio, ser), (fork, ForkSerializer())):
            out = Output(_ctx(), t, s)
            await out.process(MarkEcho("m1"))
            await out.process(CallStarted("c1", 3.0, 8000, None))
            await out.process(StateChanged(CallState.STREAMING))  # no message for this one
        ctx = _ctx()
        gone = Output(ctx, ListTransport(fail=True), ser)
        await gone.process(LagFrame(1.2, 0.5, 1.0, 3.0))
        return twilio, fork, ctx

    twilio, fork, ctx = asyncio.run(go())
    assert json.loads(twilio.sent[0]) == {"event": "mark", "streamSid": "MZ9", "mark": {"name": "m1"}}
    assert [json.loads(m)["event"] for m in fork.sent] == ["callvet.started"]  # fork has no marks
    assert ctx.gone


def test_control_turns_robot_events_and_keys_into_typed_frames_at_call_audio_time() -> None:
    async def go() -> tuple[Collect, CallContext]:
        ctx = _ctx()
        ctx.received = 16000  # 2 s of audio so far
        out = Collect()
        ctl = CallControl(ctx, server=None, queue=None, answers=None, observers=None, asr=None)  # type: ignore[arg-type]
        link(ctl, out)
        await ctl.process(ClientEventFrame("callvet.question", {"question_id": "q1", "text": "Job?",
                                                                "answer_type": "text"}))
        await ctl.process(ClientEventFrame("callvet.question", {"ended_at_s": "soon"}))
        await ctl.process(ClientEventFrame("callvet.transcript", {"text": "nurse", "final": False}))
        await ctl.process(DtmfFrame("7"))
        ctx.sm.to(CallState.STARTED)
        await ctl.process(StopFrame("stop"))
        return out, ctx

    out, ctx = asyncio.run(go())
    (rec,) = out.of(QuestionRecord)
    (q,) = out.of(QuestionAsked)
    assert rec.t_s == 2.0 and q.ended_at_s == 2.0 and q.data == {"answer_type": "text"}
    assert out.of(ErrorFrame)[0].code == "bad_event"
    assert out.of(Transcript)[0] == Transcript("nurse", False, None, {})
    assert out.of(DtmfRecord) == [DtmfRecord("7", 2.0)]
    assert ctx.sm.state is CallState.STOPPED and ctx.end_reason == "stop"


class _Acc:
    def __init__(self) -> None:
        self.net_speech_s = 0.0

    def add(self, x: np.ndarray) -> None:
        self.net_speech_s += len(x) / 16000

    def voiceprint(self) -> Any:
        return type("VP", (), {"net_speech_s": self.net_speech_s})()


class _Engine:
    min_net_speech_s = 3.0

    def accumulator(self) -> _Acc:
        return _Acc()


class _Blacklist:
    def identify_voiceprint(self, vp: Any, top_k: int) -> Any:
        return type("R", (), {"alarm": False, "threshold": 0.5, "net_speech_s": vp.net_speech_s,
                              "matches": []})()


class LoudnessScorer:
    """A new scorer plugged into the voiceprint stage: hears the same speech, extends each verdict."""

    def __init__(self) -> None:
        self.peak = 0.0

    def add(self, speech16k: np.ndarray) -> None:
        self.peak = max(self.peak, float(np.abs(speech16k).max()))

    def score(self, verdict: dict[str, Any], voiceprint: Any) -> dict[str, Any]:
        return {**verdict, "peak": round(self.peak, 2), "seen_s": voiceprint.net_speech_s}

    def settle(self, verdict: dict[str, Any]) -> dict[str, Any]:
        return {**verdict, "settled": True}


def test_a_new_scorer_plugs_into_the_voiceprint_stage_after_blacklist_and_spoof() -> None:
    from callvet.voice.call.scoring import SPOOF_UNAVAILABLE, EngineWatch

    watch = EngineWatch(_Engine(), _Blacklist(), 5, scorers=[LoudnessScorer()])
    watch.add(np.full(16000 * 3, 0.25, np.float32))
    v = watch.verdict()
    assert list(v)[-3:] == ["spoof", "peak", "seen_s"]  # in order: blacklist, spoof, then the new one
    assert v["spoof"] == SPOOF_UNAVAILABLE and v["peak"] == 0.25 and v["seen_s"] == 3.0
    assert watch.settle(v)["settled"] is True
