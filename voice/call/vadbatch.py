"""Silero VAD for every live call at once: one ONNX run per window step for all calls with audio waiting.

Silero is recurrent, so one call's windows must run in order, but different calls' windows are
independent: stacking them in the batch dimension costs ~31-39 us per window instead of ~101 us alone
(measured on this machine, batch 8-100 vs 1). :class:`VadHub` gathers the audio every call's driver
hands in during one event-loop turn, runs the batched steps in the worker pool, and queues each call's
probabilities. The call's own :class:`~callvet.voice.vad.VadStream` (unchanged hysteresis: speech start
after 250 ms, end after the configured silence) then replays them through :class:`ReplayVad` when the
call's processor feeds it the same audio, so events are those of the per-call VAD.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
from callvet.voice.call.frames import decode_payload
from callvet.voice.vad import window_geometry

__all__ = ["ReplayVad", "Then", "VadHub", "VadLine", "run_batched"]

#: A call's follow-up to its VAD step, run in the same pool job on the call's decoded samples.
Then = Callable[[np.ndarray], Any]


class ReplayVad:
    """Stands in for :class:`~callvet.voice.vad.SileroVad` inside a call's ``VadStream``: returns the
    probabilities the hub computed for this call, in order (the recurrent state lives in the hub)."""

    def __init__(self) -> None:
        self.probs: deque[float] = deque()

    def step(self, window: np.ndarray, context: np.ndarray, state: np.ndarray,
             sample_rate: int) -> tuple[float, np.ndarray]:
        return self.probs.popleft(), state


class VadLine:
    """One call's side of the hub: window split, context and recurrent state."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.win, self.ctx = window_geometry(sample_rate)
        self.rem = np.zeros(0, dtype=np.float32)
        self.context = np.zeros(self.ctx, dtype=np.float32)
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.replay = ReplayVad()

    def stream(self, silence_ms: int) -> Any:
        from callvet.voice.vad import VadStream

        return VadStream(sample_rate=self.sample_rate, min_silence_ms=silence_ms, vad=self.replay)  # type: ignore[arg-type]

    def windows(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.rem, x]) if self.rem.size else x
        n = len(buf) // self.win
        self.rem = buf[n * self.win :].copy()
        return buf[: n * self.win].reshape(n, self.win)


def run_batched(session: Any, jobs: list[tuple[VadLine, np.ndarray]]) -> int:
    """Probabilities for every job's windows, batched across calls step by step (same sample rate);
    returns the number of windows."""
    wins = [(line, line.windows(x)) for line, x in jobs]
    rounds = max((len(w) for _, w in wins), default=0)
    for r in range(rounds):
        sel = [(line, w[r]) for line, w in wins if len(w) > r]
        sr = sel[0][0].sample_rate
        x = np.stack([np.concatenate([line.context, w]) for line, w in sel]).astype(np.float32)
        state = np.concatenate([line.state for line, _ in sel], axis=1)
        out, new_state = session.run(None, {"input": x, "state": state, "sr": np.array(sr, dtype=np.int64)})
        for j, (line, w) in enumerate(sel):
            line.replay.probs.append(float(out[j, 0]))
            line.state = new_state[:, j : j + 1, :]
            line.context = w[-line.ctx :]
    return sum(len(w) for _, w in wins)


class VadHub:
    """Gathers audio from all calls' drivers during one loop turn, then one pool job decodes it, runs
    the batched VAD and then each call's own follow-up (``then``: its processor), so a call's batch costs
    one pool hop and the whole gathered batch one wake-up of the event loop, not two per call. Each
    driver gets its follow-up's result (or, without one, its float samples; the VAD result waits in its
    line). A follow-up that raises fails only its own call."""

    def __init__(self, pool: Executor, session: Any | None = None, *, gather_s: float = 0.0,
                 jobs: int = 1, max_job_calls: int = 1000) -> None:
        self._session = session
        self.pool = pool
        #: How long the first submit of a batch waits for others (0: the rest of this loop turn). A
        #: few tens of ms turn hundreds of pool hops a second into tens: every hop is a GIL hand-over
        #: between threads, which costs most when the machine is busy.
        self.gather_s = gather_s
        self.jobs = max(1, jobs)
        self.max_job_calls = max(1, max_job_calls)
        self._waiting: list[tuple[VadLine, bytes, str, Then | None, asyncio.Future[Any]]] = []
        self._scheduled = False
        self.runs = 0
        self.windows = 0

    async def submit(self, line: VadLine, data: bytes, encoding: str, then: Then | None = None) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((line, data, encoding, then, fut))
        if not self._scheduled:
            self._scheduled = True
            if self.gather_s > 0:
                loop.call_later(self.gather_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        """Hands the gathered calls to the pool in ``jobs`` slices (at most ``max_job_calls`` calls
        each): one job for everything would keep the same calls together on one worker turn after turn
        while the other workers idle."""
        self._scheduled = False
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        k = min(len(batch), max(self.jobs, -(-len(batch) // self.max_job_calls)))
        for i in range(k):
            self._submit(batch[i::k])

    def _submit(self, batch: list[tuple[VadLine, bytes, str, Then | None, asyncio.Future[Any]]]) -> None:
        loop = asyncio.get_running_loop()
        work = [(line, data, enc, then) for line, data, enc, then, _ in batch]
        task = loop.run_in_executor(self.pool, self._work, work)

        def done(f: asyncio.Future[list[tuple[bool, Any]]]) -> None:
            exc = f.exception()
            for i, (*_, fut) in enumerate(batch):
                if fut.done():
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                    continue
                ok, value = f.result()[i]
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        task.add_done_callback(done)

    def _work(self, batch: list[tuple[VadLine, bytes, str, Then | None]]) -> list[tuple[bool, Any]]:
        samples = [decode_payload(data, enc) for _, data, enc, _ in batch]
        by_rate: dict[int, list[tuple[VadLine, np.ndarray]]] = {}
        for (line, *_), x in zip(batch, samples, strict=True):
            by_rate.setdefault(line.sample_rate, []).append((line, x))
        for jobs in by_rate.values():
            self.windows += run_batched(self.session, jobs)
            self.runs += 1
        out: list[tuple[bool, Any]] = []
        for (*_, then), x in zip(batch, samples, strict=True):
            if then is None:
                out.append((True, x))
                continue
            try:
                out.append((True, then(x)))
            except Exception as exc:
                out.append((False, exc))
        return out

    @property
    def session(self) -> Any:
        """The Silero ONNX session (the process-wide one of :func:`callvet.voice.vad.default_vad`)."""
        if self._session is None:
            from callvet.voice.vad import default_vad

            self._session = default_vad()._session
        return self._session
