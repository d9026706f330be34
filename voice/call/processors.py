"""The call as a pipeline of frame processors (Pipecat's model), and the processors on the event loop.

A call's frames (:mod:`callvet.voice.call.frames`) go through processors linked in one line::

    serializer in -> CallSetup -> AudioQueue (shedding, marks; drives the worker-pool analysis stage:
    VAD -> prosody -> voiceprint/spoof/reuse) -> AnswerContext -> ServerAsr -> Observers -> Recorder
    -> Output (serializer out)

Each processor handles the frame types it knows and pushes everything (its own results included)
downstream, so a new scorer or consumer is one more processor, not another branch in a god object.
Processors that produce events *from* a frame push the frame first and their events after it: the
robot always gets ``answer_end`` before the next question an observer asks in reply.

Per-call state several processors read (the call's id and info, audio time, the state machine, the end
reason) is one :class:`CallContext`. Time comes from an injected :class:`Clock`, so every processor runs
on a fake clock in the tests.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from callvet.voice.call.frames import (
    AnswerEnded,
    AnswerStarted,
    CallEnded,
    CallStarted,
    DtmfRecord,
    ErrorFrame,
    LagFrame,
    ObserverEvent,
    QuestionAsked,
    QuestionRecord,
    ServerTranscript,
    StartFrame,
    Transcript,
    VerdictReady,
    VoiceCheckpoint,
)
from callvet.voice.call.observer import CallInfo, CallObserver
from callvet.voice.call.pipeline import CallConfig
from callvet.voice.call.state import CallState, StateMachine

__all__ = [
    "AnswerContext",
    "CallContext",
    "Clock",
    "FrameProcessor",
    "Observers",
    "Output",
    "Recorder",
    "StateChanged",
    "SystemClock",
    "link",
]

log = logging.getLogger("callvet.calls")


class Clock(Protocol):
    """Monotonic seconds; the only time source processors use."""

    def monotonic(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class StateChanged:
    """The call moved to ``state`` (the record follows)."""

    state: CallState


@dataclass
class CallContext:
    """What every processor of one call may read: identity, config, clock, audio time, state."""

    call_id: str
    protocol: str
    actor: str
    cfg: CallConfig
    clock: Clock = field(default_factory=SystemClock)
    sm: StateMachine = field(default_factory=StateMachine)
    info: CallInfo | None = None
    sample_rate: int = 0
    #: Samples received (audio time of the stream).
    received: int = 0
    #: Every ``callvet.error`` sent (counted by the recorder, recorded or not).
    errors: int = 0
    end_reason: str = "disconnected"
    close_code: int | None = None
    #: The peer has gone: nothing more is sent.
    gone: bool = False
    require_case: bool = False
    case_id: str | None = None
    #: ``answer_type`` and question text of the questions observers asked, for the recogniser.
    asr_hints: dict[str, str] = field(default_factory=dict)
    asr_prompts: dict[str, str] = field(default_factory=dict)
    #: Issue 17: the session's ownership epoch of the call record (0 for a call started here; a resumed
    #: call's epoch counts its sessions), the checkpoint it resumed from and the call audio time then.
    epoch: int = 0
    resumed: dict[str, Any] | None = None
    audio_offset_s: float = 0.0
    #: The replica is draining and hands the call over: the record stays open for the robot's resume.
    handed_over: bool = False

    @property
    def audio_s(self) -> float:
        return self.audio_offset_s + (self.received / self.sample_rate if self.sample_rate else 0.0)

    def error(self, code: str, message: str, *, close_code: int | None = None,
              record: bool = True) -> ErrorFrame:
        return ErrorFrame(code, message, close_code, record, self.audio_s)

    def failed(self, code: str, close_code: int) -> None:
        """The call cannot go on: state ``failed``, with the reason and the close code."""
        if not self.sm.ended:
            self.sm.to(CallState.FAILED)
        self.end_reason = code
        self.close_code = close_code


class FrameProcessor:
    """One stage: ``process`` handles a frame and ``push`` hands frames to the next stage."""

    def __init__(self) -> None:
        self._next: FrameProcessor | None = None

    async def process(self, frame: Any) -> None:
        await self.push(frame)

    async def push(self, frame: Any) -> None:
        if self._next is not None:
            await self._next.process(frame)


def link(*processors: FrameProcessor) -> FrameProcessor:
    """Chain processors in order; returns the first."""
    for a, b in itertools.pairwise(processors):
        a._next = b
    return processors[0]


class AnswerContext(FrameProcessor):
    """Puts each answer in its context: the question it answers, its delay (from the end of that
    question, else from the previous speech end) and the robot's transcripts heard during it."""

    def __init__(self, ctx: CallContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.question: QuestionAsked | None = None
        self.answer_q: QuestionAsked | None = None
        self.delay: float | None = None
        self.last_speech_end: float | None = None
        self.transcripts: deque[str] = deque(maxlen=20)
        #: Final transcripts the robot sent (a server recognition started before one arrives yields).
        self.robot_finals = 0
        #: ``pop(index)`` of the answer audio captured for the recogniser (set when ASR is on).
        self.capture: Any = None

    async def process(self, frame: Any) -> None:
        if isinstance(frame, AnswerStarted):
            frame = self._started(frame)
        elif isinstance(frame, AnswerEnded):
            frame = self._ended(frame)
        elif isinstance(frame, QuestionAsked):
            self.question = frame
        elif isinstance(frame, Transcript) and frame.final:
            self.transcripts.append(frame.text)
            self.robot_finals += 1
        await self.push(frame)

    def _started(self, out: AnswerStarted) -> AnswerStarted:
        ref, q = self.last_speech_end, self.question
        if q is not None and (ref is None or q.ended_at_s >= ref):
            ref = q.ended_at_s
        delay = None if ref is None else max(0.0, out.t_s - ref)
        self.answer_q, self.delay = q, delay
        self.transcripts.clear()
        return replace(out, delay_s=delay, question_id=q.question_id if q else None)

    def _ended(self, out: AnswerEnded) -> AnswerEnded:
        q = self.answer_q
        self.last_speech_end = out.end_s
        if self.question is q:
            self.question = None
        return replace(
            out, delay_s=self.delay, question_id=q.question_id if q else None,
            prosody={**out.prosody, "delay_s": None if self.delay is None else round(self.delay, 3)},
            transcripts=tuple(self.transcripts),
            audio16k=self.capture.pop(out.index) if self.capture is not None else None)


#: Observer hook for each frame type, and how the frame becomes its argument.
_HOOKS: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    CallStarted: ("on_start", lambda f: ()),
    QuestionAsked: ("on_question", lambda f: (f,)),
    Transcript: ("on_transcript", lambda f: (f,)),
    ServerTranscript: ("on_transcript", lambda f: (f.transcript,)),
    AnswerStarted: ("on_answer_start", lambda f: (f,)),
    AnswerEnded: ("on_answer_end", lambda f: (f,)),
    VerdictReady: ("on_verdict", lambda f: (f.verdict,)),
    CallEnded: ("on_stop", lambda f: (f.reason,)),
}


class Observers(FrameProcessor):
    """The questionnaire seam: each frame goes on first, then the observers' hook for it runs and the
    ``callvet.*`` events it returns follow as :class:`ObserverEvent`. A hook that raises drops its
    observer for the call (``observer_failed``); the call goes on."""

    def __init__(self, ctx: CallContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.observers: list[tuple[str, CallObserver]] = []

    async def process(self, frame: Any) -> None:
        await self.push(frame)
        hook = _HOOKS.get(type(frame))
        if hook is not None:
            await self.notify(hook[0], *hook[1](frame))

    async def notify(self, hook: str, *args: Any) -> None:
        info = self.ctx.info
        if info is None:
            return
        for name, obs in list(self.observers):
            try:
                result = getattr(obs, hook)(info, *args)
                if inspect.isawaitable(result):
                    result = await result
                for ev in result or []:
                    await self._event(name, ev)
            except Exception as exc:
                log.exception("call %s: observer %s failed in %s", self.ctx.call_id, name, hook)
                self.observers = [(n, o) for n, o in self.observers if n != name]
                await self.push(self.ctx.error("observer_failed",
                                               f"observer {name} failed in {hook}: {type(exc).__name__}"))

    async def _event(self, name: str, ev: Any) -> None:
        if not (isinstance(ev, dict) and str(ev.get("event", "")).startswith("callvet.")):
            raise TypeError(f"observer event must be a dict with a callvet.* event: {ev!r}")
        if ev.get("event") == "callvet.question" and ev.get("answer_type"):
            qid = str(ev.get("question_id"))
            self.ctx.asr_hints[qid] = str(ev["answer_type"])
            self.ctx.asr_prompts[qid] = str(ev.get("text") or "")[:400]
        await self.push(ObserverEvent(name, ev, self.ctx.audio_s))


def _timeline(frame: Any) -> tuple[str, dict[str, Any], float | None] | None:
    """The call-timeline entry a frame makes: (kind, data, call audio time), or None."""
    if isinstance(frame, VerdictReady):
        return "verdict", {**frame.verdict, "audio_t_s": round(frame.audio_t_s, 3)}, frame.audio_t_s
    if isinstance(frame, AnswerEnded):
        return "answer", frame.to_dict(), frame.end_s
    if isinstance(frame, ErrorFrame):
        return ("error", frame.data(), frame.t_s) if frame.record else None
    if isinstance(frame, ObserverEvent):
        return "observer", {"observer": frame.observer, **frame.event}, frame.t_s
    if isinstance(frame, LagFrame):
        return "lag", {"lag_s": frame.lag_s, "shed_s": frame.shed_s, "max_lag_s": frame.max_lag_s}, frame.t_s
    if isinstance(frame, QuestionRecord):
        q = frame.question
        data = {"question_id": q.question_id, "text": q.text, "ended_at_s": q.ended_at_s}
        return "question", data, frame.t_s
    if isinstance(frame, DtmfRecord):
        return "dtmf", {"digit": frame.digit}, frame.t_s
    if isinstance(frame, ServerTranscript):
        t = frame.transcript
        data = {"text": t.text, "final": t.final, "question_id": t.question_id, **t.data}
        return "transcript", data, frame.t_s
    return None


class Recorder(FrameProcessor):
    """The call record, written as the call goes on one database thread, in order.

    The call's row is written with its first record (start, an event, an error), not at connect: an
    idle or silently closed socket leaves nothing behind (issue 9: 200 idle sockets, 201 rows)."""

    def __init__(self, ctx: CallContext, store: Any, db_pool: Executor) -> None:
        super().__init__()
        self.ctx = ctx
        self.store = store
        self.db_pool = db_pool
        self.recorded = False
        self._futs: list[asyncio.Future[Any]] = []

    async def process(self, frame: Any) -> None:
        if isinstance(frame, ErrorFrame):
            self.ctx.errors += 1
        entry = _timeline(frame)
        if entry is not None:
            kind, data, t_s = entry
            self.write(self.store.add_event, self.ctx.call_id, kind, data, t_s=t_s)
        elif isinstance(frame, VoiceCheckpoint):
            self.write(self.store.checkpoint, self.ctx.call_id, self.ctx.epoch, frame.state)
        elif isinstance(frame, StartFrame):
            if self.ctx.resumed is None:
                self.write(self.store.start, self.ctx.call_id, frame)
            else:
                self.recorded = True  # the resumed record exists; its owner was taken over at start
        elif isinstance(frame, StateChanged):
            self.write(self.store.set_state, self.ctx.call_id, frame.state)
        await self.push(frame)

    def write(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        if not self.recorded:
            self.recorded = True
            self.write(self.store.create, self.ctx.call_id, self.ctx.protocol, self.ctx.actor)
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.db_pool, partial(fn, *args, **kw))
        except RuntimeError:
            try:
                fn(*args, **kw)
            except Exception:
                log.exception("call %s: a database write failed during shutdown", self.ctx.call_id)
            return
        fut.add_done_callback(self._done)
        self._futs = [f for f in self._futs if not f.done()]
        self._futs.append(fut)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("call %s: a database write failed", self.ctx.call_id, exc_info=fut.exception())

    async def flush(self) -> None:
        await asyncio.gather(*self._futs, return_exceptions=True)
        self._futs = []


class Output(FrameProcessor):
    """The serializer out: each frame the protocol has a message for is sent; a peer that has gone
    is not written to again."""

    def __init__(self, ctx: CallContext, transport: Any, serializer: Any) -> None:
        super().__init__()
        self.ctx = ctx
        self.transport = transport
        self.serializer = serializer
        self._lock = asyncio.Lock()
        self.sent = 0

    async def process(self, frame: Any) -> None:
        text = self.serializer.encode(frame)
        if text is None or self.ctx.gone:
            return
        try:
            async with self._lock:
                await self.transport.send_text(text)
            self.sent += 1
        except Exception:
            self.ctx.gone = True
