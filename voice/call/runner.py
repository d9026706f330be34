"""One call: its pipeline of processors, the receive loop that feeds it, and the end.

::

    Transport -> serializer in -> CallControl -> AudioQueue [-> Analysis in the worker pool] ->
    AnswerContext -> ServerAsr -> Observers -> Recorder -> Output (serializer out) -> Transport

The processors (:mod:`~callvet.voice.call.processors`, :mod:`~callvet.voice.call.control`,
:mod:`~callvet.voice.call.audioqueue`, :mod:`~callvet.voice.call.asrstage`) hold the work; this runner
only reads messages, turns them into frames with the protocol's serializer, pushes them, and when the
stream ends drains the pipeline and writes the call's end. The session speaks to a :class:`Transport`
(receive/send/close), not to a web framework: the API wraps a Starlette WebSocket in one, tests may
wrap anything.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from callvet.voice.call.asrstage import ServerAsr
from callvet.voice.call.audioqueue import AudioQueue
from callvet.voice.call.control import CLOSE_INTERNAL, CLOSE_POLICY, CallControl
from callvet.voice.call.frames import AudioFrame, CallEnded
from callvet.voice.call.processors import AnswerContext, CallContext, Observers, Output, Recorder, link
from callvet.voice.call.serializers import ProtocolError, serializer_for
from callvet.voice.call.state import CallState

if TYPE_CHECKING:
    from callvet.voice.call.server import CallServer

__all__ = ["CallSession", "Transport"]

log = logging.getLogger("callvet.calls")

#: WebSocket close code for "service restart: reconnect" (RFC 6455 registry), sent to a handed-over call.
CLOSE_SERVICE_RESTART = 1012


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next message; None when the peer has gone."""

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class CallSession:
    def __init__(self, server: CallServer, transport: Transport, protocol: str, actor: str, *,
                 require_case: bool = False) -> None:
        self.server = server
        self.transport = transport
        self.cfg = cfg = server.cfg
        self.ctx = ctx = CallContext(uuid.uuid4().hex, protocol, actor, cfg, server.clock,
                                     require_case=require_case)
        self.serializer = serializer_for(protocol, max_frame_s=cfg.max_frame_s, jitter_depth=cfg.jitter_depth)
        self.queue = AudioQueue(ctx, server.pool, server.vad_hub)
        self.answers = AnswerContext(ctx)
        self.asr = ServerAsr(ctx, self.answers, server.asr_grace_s)
        self.observers = Observers(ctx)
        self.recorder = Recorder(ctx, server.store, server.db_pool)
        self.control = CallControl(ctx, server, self.queue, self.answers, self.observers, self.asr)
        self.head = link(self.control, self.queue, self.answers, self.asr, self.observers, self.recorder,
                         Output(ctx, transport, self.serializer))

    @property
    def call_id(self) -> str:
        return self.ctx.call_id

    async def run(self) -> None:
        try:
            try:
                await self._receive_loop()
            except TimeoutError:
                await self.control.fail("idle_timeout", f"nothing received for {self.cfg.idle_timeout_s:g} s",
                                        CLOSE_POLICY, record=self.recorder.recorded)
        except Exception as exc:
            log.exception("call %s failed", self.call_id)
            await self.control.fail("internal", f"internal error: {type(exc).__name__}", CLOSE_INTERNAL)
        finally:
            await self._finish()

    async def _receive_loop(self) -> None:
        """Messages -> frames -> the pipeline, until stop, failure, disconnect or idle timeout.

        The idle deadline is one timer moved forward at most once a second (not a task per message,
        which is what ``wait_for`` would cost on a loop carrying hundreds of calls)."""
        loop, ctx, idle = asyncio.get_running_loop(), self.ctx, self.cfg.idle_timeout_s
        n_msgs = 0
        async with asyncio.timeout(idle) as deadline:
            moved = loop.time()
            while not ctx.sm.ended:
                now = loop.time()
                if now - moved > 1.0:
                    deadline.reschedule(now + idle)
                    moved = now
                msg = await self.transport.receive()
                if msg is None:
                    ctx.gone, ctx.end_reason = True, "disconnected"
                    return
                try:
                    ser = self.serializer
                    frames = ser.text(msg) if isinstance(msg, str) else ser.binary(msg)
                except ProtocolError as exc:
                    await self._protocol_error(exc)
                    continue
                for frame in frames:
                    await self.head.process(frame)
                    if ctx.sm.ended:
                        break
                await self.queue.backpressure()
                n_msgs += 1
                if n_msgs % 8 == 0:
                    await asyncio.sleep(0)  # buffered messages never starve this call's pipeline

    async def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.close_code is not None:
            await self.control.fail(exc.code, exc.message, exc.close_code)
            return
        await self.control.push(self.ctx.error(exc.code, exc.message))
        if self.ctx.errors > self.cfg.max_errors:
            await self.control.fail("too_many_errors", f"more than {self.cfg.max_errors} bad messages",
                                    CLOSE_POLICY)

    async def _finish(self) -> None:
        ctx = self.ctx
        try:
            if ctx.sm.state is not CallState.FAILED:
                for frame in self.serializer.finish():
                    if isinstance(frame, AudioFrame):
                        await self.queue.process(frame)
            await self.queue.finish()
            await self.asr.wait()
            if not ctx.handed_over:  # a handed-over call has not ended: no observer hears a stop
                await self.head.process(CallEnded(ctx.end_reason))
        finally:
            if not ctx.sm.ended:
                ctx.sm.to(CallState.STOPPED)
            if not self.recorder.recorded:
                log.info("call %s: closed (%s) before anything was recorded", self.call_id, ctx.end_reason)
            elif ctx.handed_over:
                self.recorder.write(self.server.store.add_event, self.call_id, "handed_over",
                                    {"epoch": ctx.epoch}, t_s=round(ctx.audio_s, 3))
            else:
                self.recorder.write(self.server.store.end, self.call_id, ctx.sm.state, reason=ctx.end_reason,
                                    close_code=ctx.close_code, audio_s=ctx.audio_s, net_speech_s=self._net(),
                                    stats=self.stats(), epoch=ctx.epoch)
            await self.recorder.flush()
            if not ctx.gone:
                try:
                    await self.transport.close(ctx.close_code or 1000, ctx.end_reason[:100])
                except Exception:
                    ctx.gone = True

    async def hand_over(self) -> bool:
        """This replica is draining (issue 17): tell the robot to reconnect with ``resume``, close with
        1012 (service restart) and leave the call record open with a last checkpoint. False for a call
        not started yet or already ending (it just ends)."""
        ctx = self.ctx
        if ctx.sm.ended or ctx.info is None or ctx.handed_over:
            return False
        ctx.handed_over, ctx.end_reason, ctx.close_code = True, "handed_over", CLOSE_SERVICE_RESTART
        await self.control.push(ctx.error(
            "handed_over", "this replica is shutting down: reconnect with customParameters resume=true "
            f"(or resume_call_id={ctx.call_id})", close_code=CLOSE_SERVICE_RESTART, record=False))
        try:
            await self.transport.close(CLOSE_SERVICE_RESTART, "handed_over")
        except Exception:
            ctx.gone = True
        return True

    def _net(self) -> float:
        a = self.queue.analysis
        return a.processor.net_speech_s if a is not None and a.processor.watch is not None else 0.0

    def stats(self) -> dict[str, Any]:
        """The call record's ``stats``: what came in, what was shed, the final verdict, jitter counts."""
        q = self.queue
        p = q.analysis.processor if q.analysis is not None else None
        out: dict[str, Any] = {
            "frames": q.frames, "protocol_errors": self.ctx.errors, "shed_s": round(q.shed_s, 3),
            "lag_events": q.lag_events, "max_batch_s": round(q.max_batch_s, 3),
            "answers": p.answers if p else 0,
            "final_verdict": p.last_verdict if p else None,
            "spoof": (p.last_verdict or {}).get("spoof") if p else None,
            "unembedded_speech_s": round(p.skipped_s, 3) if p else 0.0,
        }
        jitter = getattr(self.serializer, "jitter", None)
        if jitter is not None:
            out.update(late=jitter.late, lost=jitter.lost, reordered=jitter.reordered,
                       duplicates=jitter.duplicates)
        return out
