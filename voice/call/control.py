"""The control processor: the frames that change the call itself (start, stop, DTMF, robot events).

``start`` sets the call up, in this order: the record (and the case the stream names, issue 11), the
voiceprint watch (the shared scoring service; without one the call still runs and the robot is told
``voiceprint_unavailable``), the VAD, the analysis stage, the observers and server-side ASR; then
``callvet.started`` goes out and the observers hear ``on_start``. Robot extensions become typed frames
(:class:`~callvet.voice.call.frames.QuestionAsked`, :class:`~callvet.voice.call.frames.Transcript`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from callvet.core.errors import CallvetError
from callvet.voice.asr import AnswerCapture, recognizer_for
from callvet.voice.call.audioqueue import Analysis, AudioQueue
from callvet.voice.call.frames import (
    CallStarted,
    ClientEventFrame,
    DtmfFrame,
    DtmfRecord,
    QuestionAsked,
    QuestionRecord,
    StartFrame,
    StopFrame,
    Transcript,
)
from callvet.voice.call.observer import CallInfo
from callvet.voice.call.pipeline import CallProcessor
from callvet.voice.call.processors import AnswerContext, CallContext, FrameProcessor, Observers
from callvet.voice.call.state import CallState
from callvet.voice.call.vadbatch import VadLine

__all__ = ["CLOSE_INTERNAL", "CLOSE_POLICY", "CallControl"]

log = logging.getLogger("callvet.calls")

CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011


class CallControl(FrameProcessor):
    """Start, stop, DTMF and the robot's ``callvet.*`` events; audio and marks pass on.

    ``server`` is the :class:`~callvet.voice.call.server.CallServer` (pools, VAD, scoring, observers,
    admission); ``queue``, ``answers``, ``observers`` and ``asr`` are this call's other processors,
    which the start configures."""

    def __init__(self, ctx: CallContext, server: Any, queue: AudioQueue, answers: AnswerContext,
                 observers: Observers, asr: Any) -> None:
        super().__init__()
        self.ctx = ctx
        self.server = server
        self.queue = queue
        self.answers = answers
        self.observers = observers
        self.asr = asr

    async def process(self, frame: Any) -> None:
        ctx = self.ctx
        if isinstance(frame, StartFrame):
            await self.start(frame)
        elif isinstance(frame, StopFrame):
            ctx.end_reason = frame.reason
            if not ctx.sm.ended:
                ctx.sm.to(CallState.STOPPED)
        elif isinstance(frame, DtmfFrame):
            await self.push(DtmfRecord(frame.digit, ctx.audio_s))
        elif isinstance(frame, ClientEventFrame):
            await self._client_event(frame)
        else:
            await self.push(frame)

    async def fail(self, code: str, message: str, close_code: int, *, record: bool = True) -> None:
        await self.push(self.ctx.error(code, message, close_code=close_code, record=record))
        self.ctx.failed(code, close_code)

    async def start(self, start: StartFrame) -> None:
        ctx = self.ctx
        ctx.sm.to(CallState.STARTED)
        ctx.sample_rate = start.sample_rate
        if not await self._resume(start):
            return
        ctx.info = CallInfo(
            call_id=ctx.call_id, protocol=start.protocol, stream_id=start.stream_id,
            call_sid=start.call_sid, application_id=start.application_id, language=start.language,
            sample_rate=start.sample_rate, params=dict(start.params), epoch=ctx.epoch,
            resumed=ctx.resumed is not None,
        )
        await self.push(start)  # the record's start, before the case is looked up
        if not await self._admit(start):
            return
        watch, min_net = await self._watch(ctx.info)
        try:
            vad_line, vad = await self._vad(start.sample_rate)
        except Exception as exc:
            log.exception("call %s: VAD unavailable", ctx.call_id)
            await self.fail("vad_unavailable", f"voice activity detector unavailable: {exc}", CLOSE_INTERNAL)
            return
        processor = CallProcessor(start.sample_rate, vad, watch, ctx.cfg)
        if ctx.resumed:
            try:
                processor.restore(ctx.resumed)
            except CallvetError as exc:
                await self.push(ctx.error("checkpoint_unusable", f"voiceprint restarts: {exc.message}"))
        analysis = Analysis(processor, vad_line)
        self.queue.attach(analysis)
        await self._observers(ctx.info)
        recognizer = await self._asr_setup(ctx.info)
        if recognizer is not None:
            analysis.capture = self.answers.capture = AnswerCapture(start.sample_rate)
        resumed = None
        if ctx.resumed is not None:
            last = processor.last_verdict or {}
            resumed = {"epoch": ctx.epoch, "audio_t_s": ctx.audio_offset_s,
                       "net_speech_s": round(processor.net_speech_s, 3),
                       "alarm": last.get("alarm"), "review": last.get("review")}
        await self.push(CallStarted(ctx.call_id, min_net, start.sample_rate,
                                    recognizer.engine if recognizer is not None else None, resumed))

    async def _resume(self, start: StartFrame) -> bool:
        """Issue 17: a stream that asks to continue an open call (customParameters ``resume_call_id`` or
        ``resume``) takes the call record over: same call id, next epoch, analysis from the checkpoint.
        False when the call named cannot be resumed (the call has failed)."""
        ctx, store = self.ctx, self.server.store
        if not (start.params.get("resume_call_id") or start.params.get("resume")):
            return True
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.server.db_pool, store.find_resumable, start, ctx.actor)
        epoch = None
        if found is not None:
            epoch = await loop.run_in_executor(self.server.db_pool, store.take_over, found, start)
        if found is None or epoch is None:
            if start.params.get("resume_call_id"):
                await self.fail("call_not_resumable", "no open call of this robot has that call id "
                                "(ended, taken over, or never started)", CLOSE_POLICY, record=False)
                return False
            return True  # resume=true with nothing open: a new call
        ctx.call_id, ctx.epoch = found.call_id, epoch
        ctx.resumed = found.checkpoint or {}
        ctx.audio_offset_s = float(ctx.resumed.get("audio_t_s") or 0.0)
        log.info("call %s: resumed (epoch %d) at %.1f s of call audio", ctx.call_id, epoch,
                 ctx.audio_offset_s)
        return True

    async def _admit(self, start: StartFrame) -> bool:
        """Joins the stream to its case (issue 11); False when refused (the call has failed)."""
        ctx, admit = self.ctx, self.server.admit
        if admit is None and not ctx.require_case:
            return True
        try:
            if admit is not None:
                params = {**start.params, "stream_token": start.stream_token,
                          "resumed": ctx.resumed is not None}
                ctx.case_id = await asyncio.get_running_loop().run_in_executor(
                    self.server.db_pool, admit, ctx.call_id, params)
            if ctx.case_id is None and ctx.require_case:
                raise CallvetError("this stream must name its case (customParameters case_id, stream_token)",
                                   code="stream_token_invalid")
        except CallvetError as exc:
            await self.fail(exc.code, exc.message, CLOSE_POLICY)
            return False
        return True

    async def _watch(self, info: CallInfo) -> tuple[Any, float | None]:
        """The call's voiceprint watch (blacklist, spoof, reuse), or None when scoring is unavailable."""
        loop = asyncio.get_running_loop()
        try:
            scoring = await loop.run_in_executor(self.server.pool, self.server.scoring)
            watch = await loop.run_in_executor(self.server.pool, partial(scoring.watch, info))
            return watch, watch.min_net_speech_s
        except CallvetError as exc:
            await self.push(self.ctx.error("voiceprint_unavailable", exc.message))
            return None, None

    async def _vad(self, sample_rate: int) -> tuple[VadLine | None, Any]:
        if self.server.vad_hub is not None:
            line = VadLine(sample_rate)
            return line, line.stream(self.ctx.cfg.silence_ms)
        vad = await asyncio.get_running_loop().run_in_executor(
            self.server.pool, self.server.vad_factory, sample_rate, self.ctx.cfg.silence_ms)
        return None, vad

    async def _observers(self, info: CallInfo) -> None:
        for name, factory in self.server.observer_factories():
            try:
                obs = factory(info)
            except Exception:
                log.exception("call %s: observer factory %s failed", self.ctx.call_id, name)
                await self.push(self.ctx.error("observer_failed", f"observer {name} could not start"))
                continue
            if obs is not None:
                self.observers.observers.append((name, obs))

    async def _asr_setup(self, info: CallInfo) -> Any:
        """Recognise answers here when an observer wants transcripts (``wants_transcripts``) and the
        call's language has an engine (customParameters ``asr``: ``server`` = do not wait for the
        robot, ``robot``/``off`` = never)."""
        mode = str(info.params.get("asr", "auto")).lower()
        observers = self.observers.observers
        wanted = any(getattr(o, "wants_transcripts", False) for _, o in observers)
        if not observers or mode in ("robot", "off") or not (wanted or mode == "server"):
            return None
        lang = info.language or info.params.get("language")
        recognizer = recognizer_for(lang)
        if recognizer is not None:
            self.asr.recognizer = recognizer
        elif mode == "server":
            await self.push(self.ctx.error("asr_unavailable", f"no speech recogniser for language {lang!r}: "
                                           "send callvet.transcript events"))
        return recognizer

    async def _client_event(self, frame: ClientEventFrame) -> None:
        d, ctx = frame.data, self.ctx
        if frame.name == "callvet.question":
            try:
                ended = float(d.get("ended_at_s", ctx.audio_s))
            except (TypeError, ValueError):
                await self.push(ctx.error("bad_event", "callvet.question ended_at_s must be a number"))
                return
            q = QuestionAsked(
                question_id=str(d.get("question_id", ""))[:100], text=str(d.get("text", ""))[:2000],
                ended_at_s=ended,
                data={k: v for k, v in d.items() if k not in ("question_id", "text", "ended_at_s")},
            )
            await self.push(QuestionRecord(q, ctx.audio_s))
            await self.push(q)
        elif frame.name == "callvet.transcript":
            await self.push(Transcript(
                text=str(d.get("text", ""))[:4000], final=bool(d.get("final", True)),
                question_id=str(d["question_id"])[:100] if d.get("question_id") else None,
                data={k: v for k, v in d.items() if k not in ("text", "final", "question_id")}))
