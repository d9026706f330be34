"""Voice activity detection with Silero VAD, run by onnxruntime (never the package's torch code).

The ONNX graph ships inside the silero-vad wheel (``silero_vad/data/silero_vad.onnx``): inputs
``input`` (batch, context + window) float32, ``state`` (2, batch, 128) and ``sr`` int64; it accepts
8 kHz (256-sample windows, 32 samples of context) and 16 kHz (512 samples, 64 of context). Net speech
decides whether a voiceprint may be made, so the same model serves offline uploads
(:meth:`SileroVad.segments`) and live calls (:class:`VadStream`, per-call state, one ONNX call per
32 ms window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

import numpy as np
from callvet.core.errors import InvalidArgument, Unavailable
from callvet.voice.audio import resample

__all__ = ["SileroVad", "VadEvent", "VadStream", "default_vad", "net_speech_s", "pauses", "window_geometry"]

Segment = tuple[float, float]


def _model_path() -> Path:
    """Locate the ONNX file without importing ``silero_vad``, whose ``__init__`` imports torch: serving
    must not load torch (memory, start-up time, and a thread pool racing the call workers)."""
    spec = find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("the silero-vad package is not installed", code="vad_missing")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


def window_geometry(sample_rate: int) -> tuple[int, int]:
    """Silero's (window, context) sizes in samples: the model is trained only on these two rates."""
    if sample_rate == 16000:
        return 512, 64
    if sample_rate == 8000:
        return 256, 32
    raise InvalidArgument(f"Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")


class SileroVad:
    """A loaded Silero VAD session; thread-safe (state lives in the caller, not the session)."""

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.model_path = model_path or _model_path()
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def step(self, window: np.ndarray, context: np.ndarray, state: np.ndarray,
             sample_rate: int) -> tuple[float, np.ndarray]:
        """Speech probability of one window given the previous context and recurrent state."""
        x = np.concatenate([context, window]).astype(np.float32)[None, :]
        out, new_state = self._session.run(
            None, {"input": x, "state": state, "sr": np.array(sample_rate, dtype=np.int64)}
        )
        return float(out[0, 0]), new_state

    def probabilities(self, x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
        """Per-window speech probabilities; returns (probs, rate used, window size)."""
        if sample_rate not in (8000, 16000):
            x, sample_rate = resample(x, sample_rate, 16000), 16000
        win, ctx = window_geometry(sample_rate)
        x = np.asarray(x, dtype=np.float32)
        n = int(np.ceil(len(x) / win))
        padded = np.zeros(n * win, dtype=np.float32)
        padded[: len(x)] = x
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros(ctx, dtype=np.float32)
        probs = np.empty(n, dtype=np.float32)
        for i in range(n):
            w = padded[i * win:(i + 1) * win]
            probs[i], state = self.step(w, context, state, sample_rate)
            context = w[-ctx:]
        return probs, sample_rate, win

    def segments(
        self,
        x: np.ndarray,
        sample_rate: int,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 250,
        min_silence_ms: int = 100,
        pad_ms: int = 30,
    ) -> list[Segment]:
        """Speech segments in seconds, hysteresis on the probabilities as in Silero's reference code."""
        duration = len(x) / float(sample_rate)
        probs, sr, win = self.probabilities(x, sample_rate)
        return segments_from_probs(
            probs, win / sr, duration, threshold=threshold, min_speech_ms=min_speech_ms,
            min_silence_ms=min_silence_ms, pad_ms=pad_ms,
        )


def segments_from_probs(
    probs: np.ndarray,
    hop_s: float,
    duration_s: float,
    *,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
) -> list[Segment]:
    neg = max(threshold - 0.15, 0.01)
    raw: list[list[float]] = []
    start: float | None = None
    temp_end: float | None = None
    for i, p in enumerate(probs):
        t = i * hop_s
        if p >= threshold:
            temp_end = None
            if start is None:
                start = t
        elif p < neg and start is not None:
            if temp_end is None:
                temp_end = t
            if t + hop_s - temp_end >= min_silence_ms / 1000.0:
                raw.append([start, temp_end])
                start, temp_end = None, None
    if start is not None:
        raw.append([start, min(len(probs) * hop_s, duration_s)])
    kept = [s for s in raw if s[1] - s[0] >= min_speech_ms / 1000.0]
    pad = pad_ms / 1000.0
    out: list[list[float]] = []
    for s, e in kept:
        s, e = max(0.0, s - pad), min(duration_s, e + pad)
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in out]


def net_speech_s(segments: list[Segment]) -> float:
    return float(sum(e - s for s, e in segments))


def pauses(segments: list[Segment]) -> list[Segment]:
    """Gaps between consecutive speech segments."""
    return [(segments[i][1], segments[i + 1][0]) for i in range(len(segments) - 1)]


@lru_cache(maxsize=1)
def default_vad() -> SileroVad:
    """One process-wide session (the model is 2 MB and stateless between calls)."""
    return SileroVad()


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["speech_start", "speech_end"]
    t_s: float


@dataclass
class VadStream:
    """Streaming VAD for one call: feed chunks of any length, get speech start/end events.

    ``speech_start`` is emitted once ``min_speech_ms`` of speech is confirmed (its ``t_s`` is when the
    speech began); ``speech_end`` after ``min_silence_ms`` of silence (its ``t_s`` is when it fell
    silent), so an answer is closed only when the caller really stopped talking.
    """

    sample_rate: int = 16000
    min_silence_ms: int = 700
    threshold: float = 0.5
    min_speech_ms: int = 250
    vad: SileroVad | None = None
    _buf: np.ndarray = field(init=False, repr=False)
    _state: np.ndarray = field(init=False, repr=False)
    _context: np.ndarray = field(init=False, repr=False)
    _n_windows: int = field(init=False, default=0)
    _candidate: float | None = field(init=False, default=None)
    _triggered: bool = field(init=False, default=False)
    _silence_from: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._win, self._ctx = window_geometry(self.sample_rate)
        if self.vad is None:
            self.vad = default_vad()
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._ctx, dtype=np.float32)
        self._n_windows = 0
        self._candidate = None
        self._triggered = False
        self._silence_from = None

    @property
    def in_speech(self) -> bool:
        return self._triggered

    @property
    def t_s(self) -> float:
        """Stream time consumed so far (whole windows)."""
        return self._n_windows * self._win / self.sample_rate

    def feed(self, chunk: np.ndarray) -> list[VadEvent]:
        assert self.vad is not None
        self._buf = np.concatenate([self._buf, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        events: list[VadEvent] = []
        hop = self._win / self.sample_rate
        neg = max(self.threshold - 0.15, 0.01)
        while len(self._buf) >= self._win:
            w, self._buf = self._buf[: self._win], self._buf[self._win:]
            p, self._state = self.vad.step(w, self._context, self._state, self.sample_rate)
            self._context = w[-self._ctx:]
            t = self._n_windows * hop
            self._n_windows += 1
            if not self._triggered:
                if p >= self.threshold:
                    if self._candidate is None:
                        self._candidate = t
                    if t + hop - self._candidate >= self.min_speech_ms / 1000.0:
                        self._triggered = True
                        self._silence_from = None
                        events.append(VadEvent("speech_start", round(self._candidate, 3)))
                elif p < neg:
                    self._candidate = None
                continue
            if p >= self.threshold:
                self._silence_from = None
            elif p < neg:
                if self._silence_from is None:
                    self._silence_from = t
                if t + hop - self._silence_from >= self.min_silence_ms / 1000.0:
                    events.append(VadEvent("speech_end", round(self._silence_from, 3)))
                    self._triggered = False
                    self._candidate = None
                    self._silence_from = None
        return events

    def flush(self) -> list[VadEvent]:
        """Close an open speech segment at the end of the stream (hang-up)."""
        if not self._triggered:
            return []
        end = self._silence_from if self._silence_from is not None else self.t_s
        self._triggered = False
        self._candidate = None
        self._silence_from = None
        return [VadEvent("speech_end", round(end, 3))]
