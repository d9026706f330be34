"""The call's audio queue: shedding, back-pressure and marks on the event loop, and the one consumer
that hands audio to the analysis stage in the worker pool.

Audio arrives as :class:`~callvet.voice.call.frames.AudioFrame` (still wire bytes: decoding is numpy,
which belongs in the workers, not on the loop thread). It waits here until its call's previous batch is
done; that waiting audio *is* the call's queue. When the call is more than ``max_lag_s`` behind real
time (by the injected clock) the oldest waiting audio beyond 0.5 s is shed and a
:class:`~callvet.voice.call.frames.LagFrame` goes out, so a slow machine degrades the voiceprint, never
memory or other calls. A client faster than real time gets back-pressure instead (nothing is lost).

The analysis stage (:class:`~callvet.voice.call.pipeline.CallProcessor`: VAD -> answers/prosody ->
voiceprint, with the answer capture for server-side ASR) runs one batch at a time per call, through the
batched-VAD hub when there is one (one pool hop per batch, see :mod:`callvet.voice.call.vadbatch`).
Its output frames go on down the pipeline from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import Executor
from functools import partial
from typing import Any

from callvet.voice.call.frames import (
    BYTES_PER_SAMPLE,
    AudioFrame,
    LagFrame,
    MarkEcho,
    MarkFrame,
    Output,
    ScoringFailed,
    decode_payload,
)
from callvet.voice.call.pipeline import CallProcessor
from callvet.voice.call.processors import CallContext, FrameProcessor, StateChanged
from callvet.voice.call.state import CallState
from callvet.voice.call.vadbatch import VadHub, VadLine

__all__ = ["Analysis", "AudioQueue"]

log = logging.getLogger("callvet.calls")


class Analysis:
    """The worker-pool stage of one call: its :class:`CallProcessor` and, when the server recognises
    speech, the answer capture that runs right after it in the same job. Not thread-safe: the queue
    runs one job at a time."""

    def __init__(self, processor: CallProcessor, vad_line: VadLine | None = None) -> None:
        self.processor = processor
        self.vad_line = vad_line
        self.capture: Any = None

    def run(self, chunk: Any, *, shed_s: float = 0.0) -> list[Output]:
        fed0 = self.processor.fed
        outs = self.processor.process(chunk, shed_s=shed_s)
        if self.capture is not None:
            self.capture.after(self.processor, chunk, fed0, outs)
        return outs

    def run_bytes(self, data: bytes, encoding: str, shed_s: float) -> list[Output]:
        return self.run(decode_payload(data, encoding), shed_s=shed_s)

    def finish(self, *, hand_over: bool = False) -> list[Output]:
        p = self.processor
        if hand_over:
            return p.hand_over()
        outs = p.finish()
        if self.capture is not None:
            self.capture.after(p, p.ring.slice(0, 0), p.fed, outs)
        return outs


class AudioQueue(FrameProcessor):
    """Consumes audio and marks; pushes lag events, mark echoes and the analysis stage's frames."""

    def __init__(self, ctx: CallContext, pool: Executor, hub: VadHub | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.pool = pool
        self.hub = hub
        self.analysis: Analysis | None = None
        self.failed = False
        self.processed = 0
        self.frames = 0
        self.shed_s = 0.0
        self.lag_events = 0
        self.max_batch_s = 0.0
        self._pending: list[bytes] = []
        self._pending_n = 0
        self._encoding = "mulaw"
        self._shed_next = 0.0
        self._first_audio: float | None = None
        self._last_lag_t = -1e9
        self._marks: deque[tuple[int, str]] = deque(maxlen=256)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self._driver: asyncio.Task[None] | None = None

    def attach(self, analysis: Analysis) -> None:
        """The call has started: its analysis stage exists, the consumer runs."""
        self.analysis = analysis
        self._driver = asyncio.create_task(self._drive())

    @property
    def processed_s(self) -> float:
        """Audio dealt with so far: processed, or shed (shed audio is not waited for)."""
        sr = self.ctx.sample_rate
        return self.processed / sr + self.shed_s if sr else 0.0

    async def process(self, frame: Any) -> None:
        if isinstance(frame, AudioFrame):
            await self._audio(frame)
        elif isinstance(frame, MarkFrame):
            self._marks.append((self.ctx.received, frame.name))
            self._wake.set()
        else:
            await self.push(frame)

    async def _audio(self, frame: AudioFrame) -> None:
        ctx = self.ctx
        if ctx.sm.state is CallState.STARTED:
            ctx.sm.to(CallState.STREAMING)
            await self.push(StateChanged(CallState.STREAMING))
            self._first_audio = ctx.clock.monotonic()
        if ctx.sm.state is not CallState.STREAMING or self.failed:
            return
        self.frames += 1
        self._encoding = frame.encoding
        n = frame.n_samples
        ctx.received += n
        self._pending.append(frame.data)
        self._pending_n += n
        sr = ctx.sample_rate
        lag = min(ctx.clock.monotonic() - (self._first_audio or 0.0), ctx.audio_s) - self.processed_s
        keep = int(0.5 * sr)
        if lag > self.cfg.max_lag_s and self._pending_n > keep:
            width = BYTES_PER_SAMPLE[frame.encoding]
            buf = b"".join(self._pending)
            shed = self._pending_n - keep
            self._pending, self._pending_n = [buf[-keep * width :]], keep
            self._shed_next += shed / sr
            self.shed_s += shed / sr
            await self._lag(lag)
        if self._pending_n >= self.cfg.min_batch_s * sr:
            self._wake.set()

    async def _lag(self, lag_s: float) -> None:
        t = self.ctx.audio_s
        if t - self._last_lag_t < 1.0:
            return
        self._last_lag_t = t
        self.lag_events += 1
        await self.push(LagFrame(round(lag_s, 3), round(self.shed_s, 3), self.cfg.max_lag_s, t))

    async def backpressure(self) -> None:
        """Stop reading while too much audio waits (a client faster than real time): bounded memory,
        nothing lost; the socket's own flow control then slows the client down."""
        limit = self.cfg.max_pending_s * (self.ctx.sample_rate or 1)
        while (self._pending_n > limit and self._driver is not None and not self._driver.done()
               and not self.failed):
            self._drained.clear()
            await self._drained.wait()

    async def _drive(self) -> None:
        """The call's single consumer: hands pending audio to the pool, one batch at a time."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending_n and not self.failed:
                await self._batch()
            await self._send_marks()
            if self._closing and not self._pending_n:
                self._drained.set()
                return

    async def _batch(self) -> None:
        assert self.analysis is not None
        data, n = b"".join(self._pending), self._pending_n
        shed, self._shed_next = self._shed_next, 0.0
        self._pending, self._pending_n = [], 0
        self.max_batch_s = max(self.max_batch_s, n / self.ctx.sample_rate)
        try:
            line = self.analysis.vad_line
            if self.hub is not None and line is not None:
                then = partial(self.analysis.run, shed_s=shed)
                outs = await self.hub.submit(line, data, self._encoding, then)
            else:
                outs = await asyncio.get_running_loop().run_in_executor(
                    self.pool, partial(self.analysis.run_bytes, data, self._encoding, shed))
        except Exception as exc:
            log.exception("call %s: pipeline failed", self.ctx.call_id)
            self.failed = True
            await self.push(self.ctx.error("pipeline_failed", f"audio pipeline failed: {type(exc).__name__}"))
            outs = []
        self.processed += n
        self._drained.set()
        await self.outputs(outs)

    async def outputs(self, outs: list[Output]) -> None:
        for out in outs:
            if isinstance(out, ScoringFailed):
                await self.push(self.ctx.error(out.code, out.message))
            else:
                await self.push(out)

    async def _send_marks(self) -> None:
        while self._marks and (self._marks[0][0] <= self.processed or self.failed or self.analysis is None):
            _, name = self._marks.popleft()
            await self.push(MarkEcho(name))

    async def finish(self) -> None:
        """The stream ended: process what waits (within ``drain_timeout_s``), close the analysis, echo
        the marks left."""
        if self._driver is not None:
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._driver), self.cfg.drain_timeout_s)
            except TimeoutError:
                self._driver.cancel()
                self.failed = True
                await self.push(self.ctx.error("drain_timeout",
                                               "the call's audio could not be processed in time"))
        if self.analysis is not None and not self.failed:
            try:
                finish = (partial(self.analysis.finish, hand_over=True) if self.ctx.handed_over
                          else self.analysis.finish)
                outs = await asyncio.get_running_loop().run_in_executor(self.pool, finish)
                await self.outputs(outs)
            except Exception:
                log.exception("call %s: pipeline finish failed", self.ctx.call_id)
        await self._send_marks()
