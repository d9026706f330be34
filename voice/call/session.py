"""The call server: one :class:`CallSession` per connected robot, all sharing one worker pool.

The event loop only parses messages and moves audio; VAD, prosody, embedding and search run in the
shared :class:`~concurrent.futures.ThreadPoolExecutor` (``CALLVET_CALL_WORKERS`` threads), at most one
batch in flight per call. Audio waiting for its call's batch is the call's queue; when it exceeds
``CALLVET_MAX_LAG_S`` the oldest audio is shed and the robot gets ``callvet.lag``, so a slow machine
degrades the voiceprint, never memory or other calls. Database writes go through one dedicated thread,
in order, as the call goes.

Silero VAD runs batched across calls (:mod:`callvet.voice.call.vadbatch`): one ONNX run per window step
for every call with audio waiting, then each call's own processor job.

The session speaks to a :class:`Transport` (receive/send/close), not to a web framework: the API wraps a
Starlette WebSocket in one, tests may wrap anything.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from callvet.core.db import Database
from callvet.core.errors import CallvetError
from callvet.voice.asr import AnswerCapture, Recognizer, asr_grace_s, normalize_language, recognizer_for
from callvet.voice.call.frames import (
    BYTES_PER_SAMPLE,
    AudioFrame,
    ClientEventFrame,
    DtmfFrame,
    Frame,
    MarkFrame,
    StartFrame,
    StopFrame,
)
from callvet.voice.call.observer import (
    AnswerEnd,
    AnswerStart,
    CallInfo,
    CallObserver,
    ObserverFactory,
    QuestionAsked,
    Transcript,
    observer_factories,
)
from callvet.voice.call.pipeline import (
    AnswerEnded,
    AnswerStarted,
    CallConfig,
    CallProcessor,
    Output,
    ScoringFailed,
    VerdictReady,
)
from callvet.voice.call.scoring import VoiceScoring
from callvet.voice.call.serializers import ProtocolError, serializer_for
from callvet.voice.call.state import CallState, StateMachine
from callvet.voice.call.store import CallStore
from callvet.voice.call.vadbatch import VadHub, VadLine

__all__ = ["CLOSE_INTERNAL", "CLOSE_NORMAL", "CLOSE_TRY_LATER", "CallServer", "CallSession", "Transport"]

log = logging.getLogger("callvet.calls")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next message; None when the peer has gone."""

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


def default_vad_factory(sample_rate: int, silence_ms: int) -> Any:
    from callvet.voice.vad import VadStream

    return VadStream(sample_rate=sample_rate, min_silence_ms=silence_ms)


class CallServer:
    """Process-wide state of the call server: config, pools, the store and the scoring service.

    ``scoring`` builds the (heavy, shared) :class:`VoiceScoring` on first use, off the event loop; when
    it fails (models not built, blacklist unavailable) calls still run, record and measure prosody,
    and the robot is told ``voiceprint_unavailable``.
    """

    def __init__(
        self,
        db: Database,
        *,
        cfg: CallConfig | None = None,
        scoring: Callable[[], VoiceScoring] | None = None,
        vad_factory: Callable[[int, int], Any] = default_vad_factory,
        observers: list[tuple[str, ObserverFactory]] | None = None,
        batch_vad: bool | None = None,
        admit: Callable[[str, dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.cfg = cfg or CallConfig()
        #: Joins a starting stream to its case (issue 11): ``admit(call_id, customParameters)`` returns
        #: the case id, None for a stream that names no case, or raises CallvetError to refuse it.
        self.admit = admit
        self._saved_switch = sys.getswitchinterval()
        if self.cfg.switch_interval_s > 0:
            sys.setswitchinterval(self.cfg.switch_interval_s)
        use_hub = self.cfg.batch_vad if batch_vad is None else batch_vad
        self.store = CallStore(db)
        self.pool = ThreadPoolExecutor(max(1, self.cfg.workers), thread_name_prefix="call-cpu")
        self.db_pool = ThreadPoolExecutor(1, thread_name_prefix="call-db")
        self.vad_factory = vad_factory
        #: One batched Silero run for all calls (only with the stock VAD; a custom factory runs per call).
        self.vad_hub = (VadHub(self.pool, gather_s=self.cfg.gather_s, jobs=max(1, self.cfg.workers),
                               max_job_calls=16)
                        if use_hub and vad_factory is default_vad_factory else None)
        self._scoring_factory = scoring
        self._scoring: VoiceScoring | None = None
        self._scoring_error: CallvetError | None = None
        self._scoring_lock = threading.Lock()
        self._observers = observers
        self.asr_grace_s = asr_grace_s()
        self.active: dict[str, CallSession] = {}

    def observer_factories(self) -> list[tuple[str, ObserverFactory]]:
        return list(self._observers) if self._observers is not None else observer_factories()

    def scoring(self) -> VoiceScoring:
        """The shared scoring service (built once; a failure is remembered and re-raised)."""
        if self._scoring is not None:
            return self._scoring
        with self._scoring_lock:
            if self._scoring is None:
                if self._scoring_factory is None:
                    raise CallvetError("no voiceprint scoring configured", code="voiceprint_unavailable")
                try:
                    self._scoring = self._scoring_factory()
                except CallvetError as exc:
                    raise CallvetError(exc.message, code="voiceprint_unavailable") from exc
                except Exception as exc:
                    log.exception("voiceprint scoring could not be built")
                    raise CallvetError(f"voiceprint scoring could not be built: {exc}",
                                       code="voiceprint_unavailable") from exc
            return self._scoring

    async def handle(self, transport: Transport, protocol: str, actor: str, *,
                     require_case: bool = False) -> CallSession | None:
        """Run one call to its end; beyond ``max_calls`` concurrent calls the robot is turned away
        (``callvet.error`` ``capacity``, close 1013 try again later) before anything is recorded."""
        if len(self.active) >= self.cfg.max_calls:
            try:
                await transport.send_text(json.dumps({
                    "event": "callvet.error", "code": "capacity", "close_code": CLOSE_TRY_LATER,
                    "message": f"the call server is at its limit of {self.cfg.max_calls} calls"}))
                await transport.close(CLOSE_TRY_LATER, "capacity")
            except Exception:
                log.info("a call turned away for capacity had already gone")
            return None
        session = CallSession(self, transport, protocol, actor)
        session.require_case = require_case
        self.active[session.call_id] = session
        try:
            await session.run()
        finally:
            self.active.pop(session.call_id, None)
        return session

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.db_pool.shutdown(wait=True)
        sys.setswitchinterval(self._saved_switch)


class CallSession:
    def __init__(self, server: CallServer, transport: Transport, protocol: str, actor: str) -> None:
        self.server = server
        self.cfg = server.cfg
        self.transport = transport
        self.protocol = protocol
        self.actor = actor
        self.call_id = uuid.uuid4().hex
        self.sm = StateMachine()
        self.serializer = serializer_for(protocol, max_frame_s=self.cfg.max_frame_s,
                                         jitter_depth=self.cfg.jitter_depth)
        self.info: CallInfo | None = None
        self.processor: CallProcessor | None = None
        self.observers: list[tuple[str, CallObserver]] = []
        self.end_reason = "disconnected"
        self.close_code: int | None = None
        self.sample_rate = 0
        self.received = 0
        self.processed = 0
        self.errors = 0
        self.shed_s = 0.0
        self.lag_events = 0
        self.frames = 0
        self.max_batch_s = 0.0
        self._pending: list[bytes] = []
        self._encoding = "mulaw"
        self._pending_n = 0
        self._shed_next = 0.0
        self._marks: deque[tuple[int, str]] = deque(maxlen=256)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self._driver: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._gone = False
        self._db_futs: list[asyncio.Future[Any]] = []
        #: The call's row is written with its first record (start, an event, an error), not at connect:
        #: an idle or silently closed socket leaves nothing behind (issue 9: 200 idle sockets, 201 rows).
        self._recorded = False
        self._first_audio_wall: float | None = None
        self._last_lag_t = -1e9
        self._question: QuestionAsked | None = None
        self._answer_q: QuestionAsked | None = None
        self._answer_delay: float | None = None
        self._last_speech_end: float | None = None
        self._transcripts: deque[str] = deque(maxlen=20)
        self._pipeline_failed = False
        self._vad_line: VadLine | None = None
        self._asr: Recognizer | None = None
        self._capture: AnswerCapture | None = None
        self._robot_finals = 0
        self._asr_hints: dict[str, str] = {}
        self._asr_prompts: dict[str, str] = {}
        self._asr_tasks: set[asyncio.Task[None]] = set()
        self.require_case = False
        self.case_id: str | None = None

    # -- plumbing -------------------------------------------------------------------------------
    def _db(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        if not self._recorded:
            self._recorded = True
            self._db(self.server.store.create, self.call_id, self.protocol, self.actor)
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.server.db_pool, partial(fn, *args, **kw))
        except RuntimeError:
            try:
                fn(*args, **kw)
            except Exception:
                log.exception("call %s: a database write failed during shutdown", self.call_id)
            return
        fut.add_done_callback(self._db_done)
        self._db_futs = [f for f in self._db_futs if not f.done()]
        self._db_futs.append(fut)

    def _db_done(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("call %s: a database write failed", self.call_id, exc_info=fut.exception())

    async def _db_flush(self) -> None:
        await asyncio.gather(*self._db_futs, return_exceptions=True)
        self._db_futs = []

    async def send(self, event: dict[str, Any]) -> None:
        if self._gone:
            return
        try:
            async with self._send_lock:
                await self.transport.send_text(json.dumps(event))
        except Exception:
            self._gone = True

    async def _error(self, code: str, message: str, *, close_code: int | None = None,
                     record: bool = True) -> None:
        self.errors += 1
        data = {"code": code, "message": message}
        if close_code is not None:
            data["close_code"] = close_code
        await self.send({"event": "callvet.error", **data})
        if record:
            self._db(self.server.store.add_event, self.call_id, "error", data, t_s=self.audio_s)

    async def _fail(self, code: str, message: str, close_code: int, *, record: bool = True) -> None:
        await self._error(code, message, close_code=close_code, record=record)
        if not self.sm.ended:
            self.sm.to(CallState.FAILED)
        self.end_reason = code
        self.close_code = close_code

    @property
    def audio_s(self) -> float:
        return self.received / self.sample_rate if self.sample_rate else 0.0

    # -- main loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            try:
                await self._receive_loop()
            except TimeoutError:
                await self._fail("idle_timeout", f"nothing received for {self.cfg.idle_timeout_s:g} s",
                                 CLOSE_POLICY, record=self._recorded)
        except Exception as exc:
            log.exception("call %s failed", self.call_id)
            await self._fail("internal", f"internal error: {type(exc).__name__}", CLOSE_INTERNAL)
        finally:
            await self._finish()

    async def _receive_loop(self) -> None:
        """Messages -> frames -> handling, until stop, failure, disconnect or idle timeout.

        The idle deadline is one timer moved forward at most once a second (not a task per message,
        which is what ``wait_for`` would cost on a loop carrying hundreds of calls)."""
        loop = asyncio.get_running_loop()
        idle = self.cfg.idle_timeout_s
        n_msgs = 0
        async with asyncio.timeout(idle) as deadline:
            moved = loop.time()
            while not self.sm.ended:
                now = loop.time()
                if now - moved > 1.0:
                    deadline.reschedule(now + idle)
                    moved = now
                msg = await self.transport.receive()
                if msg is None:
                    self._gone = True
                    self.end_reason = "disconnected"
                    return
                try:
                    frames = (self.serializer.text(msg) if isinstance(msg, str)
                              else self.serializer.binary(msg))
                except ProtocolError as exc:
                    await self._protocol_error(exc)
                    continue
                for frame in frames:
                    await self._handle(frame)
                    if self.sm.ended:
                        break
                await self._backpressure()
                n_msgs += 1
                if n_msgs % 8 == 0:
                    await asyncio.sleep(0)  # buffered messages never starve this call's pipeline

    async def _backpressure(self) -> None:
        """Stop reading while too much audio waits (a client faster than real time): bounded memory,
        nothing lost; the socket's own flow control then slows the client down."""
        limit = self.cfg.max_pending_s * (self.sample_rate or 1)
        while (self._pending_n > limit and self._driver is not None and not self._driver.done()
               and not self._pipeline_failed):
            self._drained.clear()
            await self._drained.wait()

    async def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.close_code is not None:
            await self._fail(exc.code, exc.message, exc.close_code)
            return
        await self._error(exc.code, exc.message)
        if self.errors > self.cfg.max_errors:
            await self._fail("too_many_errors", f"more than {self.cfg.max_errors} bad messages",
                             CLOSE_POLICY)

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            self._audio(frame)
        elif isinstance(frame, StartFrame):
            await self._start(frame)
        elif isinstance(frame, MarkFrame):
            self._marks.append((self.received, frame.name))
            self._wake.set()
        elif isinstance(frame, StopFrame):
            self.end_reason = frame.reason
            if not self.sm.ended:
                self.sm.to(CallState.STOPPED)
        elif isinstance(frame, DtmfFrame):
            self._db(self.server.store.add_event, self.call_id, "dtmf", {"digit": frame.digit},
                     t_s=self.audio_s)
        elif isinstance(frame, ClientEventFrame):
            await self._client_event(frame)

    async def _start(self, start: StartFrame) -> None:
        self.sm.to(CallState.STARTED)
        self.sample_rate = start.sample_rate
        self.info = CallInfo(
            call_id=self.call_id, protocol=start.protocol, stream_id=start.stream_id,
            call_sid=start.call_sid, application_id=start.application_id, language=start.language,
            sample_rate=start.sample_rate, params=dict(start.params),
        )
        self._db(self.server.store.start, self.call_id, start)
        loop = asyncio.get_running_loop()
        if self.server.admit is not None or self.require_case:
            try:
                if self.server.admit is not None:
                    self.case_id = await loop.run_in_executor(
                        self.server.db_pool, self.server.admit, self.call_id,
                        {**start.params, "stream_token": start.stream_token})
                if self.case_id is None and self.require_case:
                    raise CallvetError("this stream must name its case (customParameters case_id, "
                                       "stream_token)",
                                       code="stream_token_invalid")
            except CallvetError as exc:
                await self._fail(exc.code, exc.message, CLOSE_POLICY)
                return
        watch = None
        min_net: float | None = None
        try:
            scoring = await loop.run_in_executor(self.server.pool, self.server.scoring)
            watch = await loop.run_in_executor(self.server.pool, partial(scoring.watch, self.info))
            min_net = watch.min_net_speech_s
        except CallvetError as exc:
            await self._error("voiceprint_unavailable", exc.message)
        try:
            if self.server.vad_hub is not None:
                self._vad_line = VadLine(start.sample_rate)
                vad = self._vad_line.stream(self.cfg.silence_ms)
            else:
                vad = await loop.run_in_executor(self.server.pool, self.server.vad_factory,
                                                 start.sample_rate, self.cfg.silence_ms)
        except Exception as exc:
            log.exception("call %s: VAD unavailable", self.call_id)
            await self._fail("vad_unavailable", f"voice activity detector unavailable: {exc}", CLOSE_INTERNAL)
            return
        self.processor = CallProcessor(start.sample_rate, vad, watch, self.cfg)
        self._driver = asyncio.create_task(self._drive())
        for name, factory in self.server.observer_factories():
            try:
                obs = factory(self.info)
            except Exception:
                log.exception("call %s: observer factory %s failed", self.call_id, name)
                await self._error("observer_failed", f"observer {name} could not start")
                continue
            if obs is not None:
                self.observers.append((name, obs))
        await self._asr_setup()
        await self.send({"event": "callvet.started", "call_id": self.call_id,
                         "min_net_speech_s": min_net, "sample_rate": start.sample_rate,
                         "asr": self._asr.engine if self._asr is not None else None})
        await self._notify("on_start")

    def _audio(self, frame: AudioFrame) -> None:
        if self.sm.state is CallState.STARTED:
            self.sm.to(CallState.STREAMING)
            self._db(self.server.store.set_state, self.call_id, CallState.STREAMING)
            self._first_audio_wall = time.monotonic()
        if self.sm.state is not CallState.STREAMING or self._pipeline_failed:
            return
        self.frames += 1
        self._encoding = frame.encoding
        n = frame.n_samples
        self.received += n
        self._pending.append(frame.data)
        self._pending_n += n
        lag = min(time.monotonic() - (self._first_audio_wall or 0.0), self.audio_s) - self.processed_s
        keep = int(0.5 * self.sample_rate)
        if lag > self.cfg.max_lag_s and self._pending_n > keep:
            width = BYTES_PER_SAMPLE[frame.encoding]
            buf = b"".join(self._pending)
            shed = self._pending_n - keep
            self._pending, self._pending_n = [buf[-keep * width :]], keep
            self._shed_next += shed / self.sample_rate
            self.shed_s += shed / self.sample_rate
            self._lag(lag)
        if self._pending_n >= self.cfg.min_batch_s * self.sample_rate:
            self._wake.set()

    @property
    def processed_s(self) -> float:
        """Audio dealt with so far: processed, or shed (shed audio is not waited for)."""
        return self.processed / self.sample_rate + self.shed_s if self.sample_rate else 0.0

    def _lag(self, lag_s: float) -> None:
        if self.audio_s - self._last_lag_t < 1.0:
            return
        self._last_lag_t = self.audio_s
        self.lag_events += 1
        data = {"lag_s": round(lag_s, 3), "shed_s": round(self.shed_s, 3),
                "max_lag_s": self.cfg.max_lag_s}
        self._db(self.server.store.add_event, self.call_id, "lag", data, t_s=self.audio_s)
        asyncio.get_running_loop().create_task(self.send({"event": "callvet.lag", **data}))

    async def _drive(self) -> None:
        """The call's single consumer: hands pending audio to the pool, one batch at a time."""
        loop = asyncio.get_running_loop()
        assert self.processor is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending_n and not self._pipeline_failed:
                data = b"".join(self._pending)
                n = self._pending_n
                shed, self._shed_next = self._shed_next, 0.0
                self._pending, self._pending_n = [], 0
                self.max_batch_s = max(self.max_batch_s, n / self.sample_rate)
                try:
                    hub = self.server.vad_hub
                    if hub is not None and self._vad_line is not None:
                        outs = await hub.submit(self._vad_line, data, self._encoding,
                                                partial(self._process, shed_s=shed))
                    else:
                        outs = await loop.run_in_executor(self.server.pool, partial(
                            self._process_bytes, data, self._encoding, shed))
                except Exception as exc:
                    log.exception("call %s: pipeline failed", self.call_id)
                    self._pipeline_failed = True
                    await self._error("pipeline_failed", f"audio pipeline failed: {type(exc).__name__}")
                    outs = []
                self.processed += n
                self._drained.set()
                await self._outputs(outs)
            await self._send_marks()
            if self._closing and not self._pending_n:
                self._drained.set()
                return

    async def _send_marks(self) -> None:
        while self._marks and (self._marks[0][0] <= self.processed or self._pipeline_failed
                               or self.processor is None):
            _, name = self._marks.popleft()
            text = self.serializer.outbound_mark(name)
            if text is not None and not self._gone:
                try:
                    async with self._send_lock:
                        await self.transport.send_text(text)
                except Exception:
                    self._gone = True

    async def _outputs(self, outs: list[Output]) -> None:
        for out in outs:
            if isinstance(out, VerdictReady):
                event = {"event": "callvet.voiceprint", **out.verdict, "audio_t_s": round(out.audio_t_s, 3)}
                await self.send(event)
                self._db(self.server.store.add_event, self.call_id, "verdict",
                         {**out.verdict, "audio_t_s": round(out.audio_t_s, 3)}, t_s=out.audio_t_s)
                await self._notify("on_verdict", out.verdict)
            elif isinstance(out, AnswerStarted):
                await self._answer_started(out)
            elif isinstance(out, AnswerEnded):
                await self._answer_ended(out)
            elif isinstance(out, ScoringFailed):
                await self._error(out.code, out.message)

    async def _answer_started(self, out: AnswerStarted) -> None:
        ref = self._last_speech_end
        q = self._question
        if q is not None and (ref is None or q.ended_at_s >= ref):
            ref = q.ended_at_s
        delay = None if ref is None else max(0.0, out.t_s - ref)
        self._answer_q, self._answer_delay = q, delay
        self._transcripts.clear()
        await self.send({"event": "callvet.answer_start", "index": out.index, "t_s": round(out.t_s, 3),
                         "delay_s": None if delay is None else round(delay, 3),
                         "question_id": q.question_id if q else None})
        await self._notify("on_answer_start", AnswerStart(out.index, out.t_s, delay,
                                                          q.question_id if q else None))

    async def _answer_ended(self, out: AnswerEnded) -> None:
        q = self._answer_q
        answer = AnswerEnd(
            index=out.index, start_s=out.start_s, end_s=out.end_s, delay_s=self._answer_delay,
            question_id=q.question_id if q else None,
            prosody={**out.prosody, "delay_s": None if self._answer_delay is None
                     else round(self._answer_delay, 3)},
            transcripts=tuple(self._transcripts),
            audio16k=self._capture.pop(out.index) if self._capture is not None else None,
        )
        self._last_speech_end = out.end_s
        if self._question is q:
            self._question = None
        data = answer.to_dict()
        await self.send({"event": "callvet.answer_end", **data})
        self._db(self.server.store.add_event, self.call_id, "answer", data, t_s=out.end_s)
        await self._notify("on_answer_end", answer)
        if answer.audio16k is not None and not answer.transcripts:
            task = asyncio.get_running_loop().create_task(self._server_asr(answer, self._robot_finals))
            self._asr_tasks.add(task)
            task.add_done_callback(self._asr_tasks.discard)

    async def _client_event(self, frame: ClientEventFrame) -> None:
        d = frame.data
        if frame.name == "callvet.question":
            try:
                ended = float(d.get("ended_at_s", self.audio_s))
            except (TypeError, ValueError):
                await self._error("bad_event", "callvet.question ended_at_s must be a number")
                return
            q = QuestionAsked(
                question_id=str(d.get("question_id", ""))[:100], text=str(d.get("text", ""))[:2000],
                ended_at_s=ended,
                data={k: v for k, v in d.items() if k not in ("question_id", "text", "ended_at_s")},
            )
            self._question = q
            self._db(self.server.store.add_event, self.call_id, "question",
                     {"question_id": q.question_id, "text": q.text, "ended_at_s": ended}, t_s=self.audio_s)
            await self._notify("on_question", q)
        elif frame.name == "callvet.transcript":
            text = str(d.get("text", ""))[:4000]
            t = Transcript(text=text, final=bool(d.get("final", True)),
                           question_id=str(d["question_id"])[:100] if d.get("question_id") else None,
                           data={k: v for k, v in d.items() if k not in ("text", "final", "question_id")})
            if t.final:
                self._transcripts.append(text)
                self._robot_finals += 1
            await self._notify("on_transcript", t)

    async def _notify(self, hook: str, *args: Any) -> None:
        if self.info is None:
            return
        for name, obs in list(self.observers):
            try:
                result = getattr(obs, hook)(self.info, *args)
                if inspect.isawaitable(result):
                    result = await result
                for ev in result or []:
                    if not (isinstance(ev, dict) and str(ev.get("event", "")).startswith("callvet.")):
                        raise TypeError(f"observer event must be a dict with a callvet.* event: {ev!r}")
                    if ev.get("event") == "callvet.question" and ev.get("answer_type"):
                        self._asr_hints[str(ev.get("question_id"))] = str(ev["answer_type"])
                        self._asr_prompts[str(ev.get("question_id"))] = str(ev.get("text") or "")[:400]
                    await self.send(ev)
                    self._db(self.server.store.add_event, self.call_id, "observer",
                             {"observer": name, **ev}, t_s=self.audio_s)
            except Exception as exc:
                log.exception("call %s: observer %s failed in %s", self.call_id, name, hook)
                self.observers = [(n, o) for n, o in self.observers if n != name]
                await self._error("observer_failed",
                                  f"observer {name} failed in {hook}: {type(exc).__name__}")

    # -- server-side speech recognition (callvet.voice.asr) -----------------------------------------
    async def _asr_setup(self) -> None:
        """Recognise answers here when an observer wants transcripts (``wants_transcripts``) and the
        call's language has an engine (customParameters ``asr``: ``server`` = do not wait for the
        robot, ``robot``/``off`` = never)."""
        assert self.info is not None
        mode = str(self.info.params.get("asr", "auto")).lower()
        wanted = any(getattr(o, "wants_transcripts", False) for _, o in self.observers)
        if not self.observers or mode in ("robot", "off") or not (wanted or mode == "server"):
            return
        lang = self.info.language or self.info.params.get("language")
        self._asr = recognizer_for(lang)
        if self._asr is not None:
            self._capture = AnswerCapture(self.sample_rate)
        elif mode == "server":
            await self._error("asr_unavailable", f"no speech recogniser for language {lang!r}: "
                              "send callvet.transcript events")

    def _process(self, chunk: Any, *, shed_s: float = 0.0) -> list[Output]:
        assert self.processor is not None
        fed0 = self.processor.fed
        outs = self.processor.process(chunk, shed_s=shed_s)
        if self._capture is not None:
            self._capture.after(self.processor, chunk, fed0, outs)
        return outs

    def _process_bytes(self, data: bytes, encoding: str, shed_s: float) -> list[Output]:
        from callvet.voice.call.frames import decode_payload

        return self._process(decode_payload(data, encoding), shed_s=shed_s)

    def _process_finish(self) -> list[Output]:
        assert self.processor is not None
        outs = self.processor.finish()
        if self._capture is not None:
            self._capture.after(self.processor, self.processor.ring.slice(0, 0), self.processor.fed, outs)
        return outs

    async def _server_asr(self, answer: AnswerEnd, finals: int) -> None:
        """Recognise an answer the robot sent no transcript for (after the grace period) in the worker
        pool and hand it to observers as a final ``callvet.transcript``; a robot transcript that comes
        first wins."""
        assert self._asr is not None and self.info is not None
        if str(self.info.params.get("asr", "auto")).lower() != "server":
            await asyncio.sleep(self.server.asr_grace_s)
        if self._robot_finals != finals:
            return
        qid = answer.question_id
        q = self._answer_q
        hint = (q.data.get("answer_type") if q is not None and q.question_id == qid else None) \
            or self._asr_hints.get(str(qid))
        lang = normalize_language(self.info.language or self.info.params.get("language"))
        # Engines that decode with context (Whisper) get the question as their prompt.
        prompt = (q.text if q is not None and q.question_id == qid else "") or self._asr_prompts.get(str(qid))
        kw = {"prompt": prompt} if getattr(self._asr, "prompted", False) and prompt else {}
        try:
            # Not the call pool: a recogniser may block a thread for seconds (PocketSphinx decodes in
            # a child process and the thread waits), and the pool's threads carry every call's VAD.
            out = await asyncio.get_running_loop().run_in_executor(
                None, partial(self._asr.transcribe, answer.audio16k, lang, hint=hint, **kw))
        except CallvetError as exc:
            await self._error(exc.code, f"speech recognition failed: {exc.message}")
            return
        except Exception as exc:
            log.exception("call %s: speech recognition failed", self.call_id)
            await self._error("asr_failed", f"speech recognition failed: {type(exc).__name__}")
            return
        if self._robot_finals != finals:
            return
        data = {"source": out.engine, "confidence": out.confidence, "language": lang, "index": answer.index,
                "audio_s": round(len(answer.audio16k) / 16000, 3), "asr_s": round(out.seconds, 3)}
        event = {"event": "callvet.transcript", "text": out.text, "final": True, "question_id": qid, **data}
        await self.send(event)
        record = {k: v for k, v in event.items() if k != "event"}
        self._db(self.server.store.add_event, self.call_id, "transcript", record, t_s=answer.end_s)
        await self._notify("on_transcript", Transcript(text=out.text, final=True, question_id=qid, data=data))

    # -- the end --------------------------------------------------------------------------------
    async def _finish(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.sm.state is not CallState.FAILED:
                for frame in self.serializer.finish():
                    if isinstance(frame, AudioFrame):
                        self._audio(frame)
            if self._driver is not None:
                self._closing = True
                self._wake.set()
                try:
                    await asyncio.wait_for(asyncio.shield(self._driver), self.cfg.drain_timeout_s)
                except TimeoutError:
                    self._driver.cancel()
                    self._pipeline_failed = True
                    await self._error("drain_timeout", "the call's audio could not be processed in time")
            if self.processor is not None and not self._pipeline_failed:
                try:
                    outs = await loop.run_in_executor(self.server.pool, self._process_finish)
                    await self._outputs(outs)
                except Exception:
                    log.exception("call %s: pipeline finish failed", self.call_id)
            await self._send_marks()
            await asyncio.gather(*list(self._asr_tasks), return_exceptions=True)
            await self._notify("on_stop", self.end_reason)
        finally:
            if not self.sm.ended:
                self.sm.to(CallState.STOPPED)
            p = self.processor
            stats = {
                "frames": self.frames, "protocol_errors": self.errors, "shed_s": round(self.shed_s, 3),
                "lag_events": self.lag_events, "max_batch_s": round(self.max_batch_s, 3),
                "answers": p.answers if p else 0,
                "final_verdict": p.last_verdict if p else None,
                "spoof": (p.last_verdict or {}).get("spoof") if p else None,
                "unembedded_speech_s": round(p.skipped_s, 3) if p else 0.0,
            }
            jitter = getattr(self.serializer, "jitter", None)
            if jitter is not None:
                stats.update(late=jitter.late, lost=jitter.lost, reordered=jitter.reordered,
                             duplicates=jitter.duplicates)
            net = p.net_speech_s if p is not None and p.watch is not None else 0.0
            if not self._recorded:
                log.info("call %s: closed (%s) before anything was recorded", self.call_id, self.end_reason)
            else:
                self._db(self.server.store.end, self.call_id, self.sm.state, reason=self.end_reason,
                         close_code=self.close_code, audio_s=self.audio_s, net_speech_s=net, stats=stats)
            await self._db_flush()
            if not self._gone:
                try:
                    await self.transport.close(self.close_code or CLOSE_NORMAL, self.end_reason[:100])
                except Exception:
                    self._gone = True
