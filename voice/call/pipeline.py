"""The analysis stage of a call: VAD -> answers (prosody) -> speech -> voiceprint accumulator -> verdict.

This is the one stage of the call pipeline (:mod:`callvet.voice.call.processors`) that runs in the
worker pool, not on the event loop; it turns audio into the analysis frames of
:mod:`callvet.voice.call.frames` (re-exported here).

:class:`CallProcessor` is synchronous and runs in the call server's shared worker pool, one batch at a
time per call: the event loop hands it all audio received since the previous batch (normally one 20 ms
frame, more when the machine is busy, which batches the work by itself). It holds only a short ring of
recent audio (to back-fill speech that the VAD reports as having started earlier), the current answer's
frame features, and the voiceprint accumulator's running state; nothing grows with call length.

Speech reaches the accumulator in pieces of ``score_chunk_s`` while the applicant is still talking, so a
verdict comes as soon as ``min_net_speech_s`` of speech has been heard, not after the answer's closing
silence; the whole call is never re-embedded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from callvet.core.errors import CallvetError
from callvet.core.settings import env_value
from callvet.voice.call.frames import (
    AnswerEnded,
    AnswerStarted,
    Output,
    ScoringFailed,
    VerdictReady,
    VoiceCheckpoint,
    decode_payload,
)
from callvet.voice.call.prosody import ProsodyTracker
from scipy.signal import firwin, resample_poly

__all__ = [
    "AnswerEnded",
    "AnswerStarted",
    "CallConfig",
    "CallProcessor",
    "Output",
    "Ring",
    "ScoringFailed",
    "VerdictReady",
    "VoiceWatch",
]


#: ``resample_poly``'s own anti-aliasing filter for 8 -> 16 kHz (Kaiser 5.0, 41 taps, in float32 as it
#: would make it), designed once: designing it on every call cost two thirds of the resampling time.
_UP2_FILTER = firwin(41, 0.5, window=("kaiser", 5.0)).astype(np.float32)


def _env(name: str) -> Callable[[], Any]:
    """Default factory reading ``CALLVET_<NAME>`` now, validated by :mod:`callvet.core.settings`."""
    return lambda: env_value(name)


@dataclass(frozen=True)
class CallConfig:
    """Knobs of the call server; every one has an environment variable (``CALLVET_CALL_*``)."""

    silence_ms: int = field(default_factory=_env("call_silence_ms"))
    max_lag_s: float = field(default_factory=_env("max_lag_s"))
    workers: int = field(default_factory=_env("call_workers"))
    score_chunk_s: float = field(default_factory=_env("call_score_chunk_s"))
    #: Re-identify after this much more speech; 3 s matches the accumulator's embedding chunk, so a
    #: re-score never embeds the same speech twice.
    rescore_s: float = field(default_factory=_env("call_rescore_s"))
    #: Once a re-check has confirmed the verdict, embed only the last ``rescore_s`` of every this much
    #: further speech (and re-check then): embedding is the largest per-call cost, and a confirmed
    #: verdict rarely changes. A changed verdict returns to every ``rescore_s``. <= ``rescore_s``: off.
    stable_rescore_s: float = field(default_factory=_env("call_stable_rescore_s"))
    #: Audio gathered before a batch goes to the pool (fewer thread hops; adds at most this latency).
    min_batch_s: float = field(default_factory=_env("call_min_batch_s"))
    #: How long the batched VAD waits to gather more calls' audio into one pool job.
    gather_s: float = field(default_factory=_env("call_gather_s"))
    max_scored_s: float = field(default_factory=_env("call_max_scored_s"))
    max_pending_s: float = 10.0
    ring_s: float = 6.0
    jitter_depth: int = 8
    max_frame_s: float = 1.0
    max_errors: int = 20
    idle_timeout_s: float = field(default_factory=_env("call_idle_timeout_s"))
    drain_timeout_s: float = 15.0
    top_k: int = 5
    #: Python's GIL switch interval while the call server runs (``sys.setswitchinterval``; 0 keeps it).
    #: The event loop makes a syscall per message and must win the GIL back from busy workers each time;
    #: at the default 5 ms it waits up to that long every time (the convoy effect).
    switch_interval_s: float = field(default_factory=_env("call_switch_interval_s"))
    batch_vad: bool = field(default_factory=_env("call_batch_vad"))
    max_calls: int = field(default_factory=_env("max_calls"))


class VoiceWatch(Protocol):
    """Per-call voiceprint state: speech in, verdicts out (see :mod:`callvet.voice.call.scoring`)."""

    min_net_speech_s: float

    @property
    def net_speech_s(self) -> float: ...

    def add(self, speech16k: np.ndarray) -> None: ...

    def verdict(self) -> dict[str, Any]: ...


class Ring:
    """The last ``capacity`` samples of a stream, addressed by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        self.buf = np.zeros(capacity, dtype=np.float32)
        self.capacity = capacity
        self.end = 0

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def append(self, x: np.ndarray) -> None:
        n = len(x)
        if n >= self.capacity:
            self.end += n - self.capacity
            x = x[-self.capacity :]
            n = self.capacity
        i = self.end % self.capacity
        k = min(n, self.capacity - i)
        self.buf[i : i + k] = x[:k]
        self.buf[: n - k] = x[k:]
        self.end += n

    def slice(self, a: int, b: int) -> np.ndarray:
        a, b = max(a, self.start), min(b, self.end)
        if b <= a:
            return np.zeros(0, dtype=np.float32)
        i, j = a % self.capacity, b % self.capacity
        if i < j or j == 0:
            return self.buf[i : j or self.capacity].copy()
        return np.concatenate([self.buf[i:], self.buf[:j]])


def _verdict_key(v: dict[str, Any]) -> tuple[Any, ...]:
    top = v.get("matches") or []
    flagged = v.get("alarm") or v.get("review")
    spoof = v.get("spoof") or {}
    return (bool(v.get("alarm")), bool(v.get("review")),
            (top[0].get("identity_id") if flagged and top else None), bool(v.get("voice_reuse")),
            (spoof.get("flag"), spoof.get("kind")))


class CallProcessor:
    """One call's CPU work. Not thread-safe: the session runs at most one ``process`` at a time."""

    def __init__(self, sample_rate: int, vad: Any, watch: VoiceWatch | None, cfg: CallConfig) -> None:
        self.sr = sample_rate
        self.vad = vad
        self.watch = watch
        self.cfg = cfg
        self.ring = Ring(int(cfg.ring_s * sample_rate))
        self.fed = 0
        self.offset_s = 0.0
        self.answers = 0
        self._answer_start: int | None = None
        self._flushed = 0
        self._tracker: ProsodyTracker | None = None
        self._speech16k: list[np.ndarray] = []
        self._speech16k_n = 0
        self._scored_at = -1.0
        self._last_key: tuple[Any, ...] | None = None
        self.last_verdict: dict[str, Any] | None = None
        self.scoring_failed = False
        self.speech_s = 0.0
        #: Speech that reached the scoring stage, embedded or skipped (the call record's net speech).
        self.net_speech_s = 0.0
        self._confirmed = False
        self._skip = 0
        self.skipped_s = 0.0
        self._chunks = 0

    def checkpoint(self) -> dict[str, Any]:
        """What another replica needs to continue this call's analysis (issue 17): the voiceprint
        accumulator's embedded state, the counters and the last verdict, at the call audio time reached.
        Speech not yet embedded is left out (at most one 3 s accumulator chunk is lost if the replica
        dies)."""
        voice = self.watch.state() if self.watch is not None and hasattr(self.watch, "state") else None
        return {"v": 1, "audio_t_s": round(self._t(self.fed), 3), "answers": self.answers,
                "speech_s": round(self.speech_s, 3), "skipped_s": round(self.skipped_s, 3),
                "scored_at": self._scored_at, "confirmed": self._confirmed, "skip": self._skip,
                "last_verdict": self.last_verdict, "voice": voice}

    def hand_over(self) -> list[Output]:
        """The replica is draining (issue 17): everything heard goes into the voiceprint, then one last
        checkpoint, so the replica that resumes the call loses no scored speech. The answer in progress
        is not closed (the robot's next stream continues the call)."""
        outs: list[Output] = []
        if self._answer_start is not None:
            self._flush(self.fed, outs)
        if self.watch is not None and not self.scoring_failed:
            if self._speech16k:
                self.watch.add(np.concatenate(self._speech16k))
                self._speech16k, self._speech16k_n = [], 0
            embed = getattr(self.watch, "embed_pending", None)
            if callable(embed):
                embed()
                self.net_speech_s = self.watch.net_speech_s + self.skipped_s
        outs.append(VoiceCheckpoint(self.checkpoint()))
        return outs

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint` (a fresh processor of the resumed call)."""
        self.offset_s = float(ckpt.get("audio_t_s") or 0.0)
        self.answers = int(ckpt.get("answers") or 0)
        self.speech_s = float(ckpt.get("speech_s") or 0.0)
        self.skipped_s = float(ckpt.get("skipped_s") or 0.0)
        self._skip = int(ckpt.get("skip") or 0)
        self._confirmed = bool(ckpt.get("confirmed"))
        self.last_verdict = ckpt.get("last_verdict")
        self._last_key = _verdict_key(self.last_verdict) if self.last_verdict else None
        voice = ckpt.get("voice")
        if self.watch is not None and voice and hasattr(self.watch, "restore"):
            self.watch.restore(voice)
            self._chunks = int(getattr(self.watch, "chunks", 0))
            self._scored_at = min(float(ckpt.get("scored_at", -1.0)), self.watch.net_speech_s)
        self.net_speech_s = (self.watch.net_speech_s if self.watch is not None else 0.0) + self.skipped_s

    def _t(self, idx: int) -> float:
        return self.offset_s + idx / self.sr

    def process_bytes(self, data: bytes, encoding: str, shed_s: float = 0.0) -> list[Output]:
        """:meth:`process` of audio still in its wire encoding (decoded here, in the worker)."""
        return self.process(decode_payload(data, encoding), shed_s=shed_s)

    def process(self, chunk: np.ndarray, *, shed_s: float = 0.0) -> list[Output]:
        """Feed audio received since the last call; ``shed_s`` is audio dropped just before it."""
        outs: list[Output] = []
        if shed_s and self._answer_start is not None:
            self._end_answer(self.fed, outs)
        self.offset_s += shed_s
        step = max(1, int(self.cfg.score_chunk_s * self.sr))
        for i in range(0, len(chunk), step):
            self._process(chunk[i : i + step], outs)
        return outs

    def _process(self, chunk: np.ndarray, outs: list[Output]) -> None:
        """One piece of at most ``score_chunk_s``, so verdicts land at the same speech whatever the
        batching."""
        self.ring.append(chunk)
        self.fed += len(chunk)
        for ev in self.vad.feed(chunk):
            idx = round(ev.t_s * self.sr)
            if ev.kind == "speech_start" and self._answer_start is None:
                idx = min(max(idx, self.ring.start), self.fed)
                self.answers += 1
                self._answer_start = self._flushed = idx
                self._tracker = ProsodyTracker(self.sr)
                outs.append(AnswerStarted(self.answers, self._t(idx)))
            elif ev.kind == "speech_end" and self._answer_start is not None:
                self._end_answer(min(max(idx, self._answer_start), self.fed), outs)
        if self._answer_start is not None and self.fed - self._flushed >= self.cfg.score_chunk_s * self.sr:
            self._flush(self.fed, outs)

    def finish(self) -> list[Output]:
        """The stream ended: close the answer in progress and score what speech is left."""
        outs: list[Output] = []
        flush = getattr(self.vad, "flush", None)
        if self._answer_start is not None and callable(flush):
            for ev in flush():
                idx = round(ev.t_s * self.sr)
                self._end_answer(min(max(idx, self._answer_start), self.fed), outs)
        if self._answer_start is not None:
            self._end_answer(self.fed, outs)
        if self._speech16k_n >= 0.25 * 16000:
            self._score(outs, self.fed, final=True)
        elif self.last_verdict is not None and callable(getattr(self.watch, "settle", None)):
            self._final_spoof(outs)
        return outs

    def _final_spoof(self, outs: list[Output]) -> None:
        """No speech left to score: the watch's scorers still settle the last verdict (the spoof check
        still running for it)."""
        assert self.watch is not None and self.last_verdict is not None
        verdict = self.watch.settle(self.last_verdict)  # type: ignore[attr-defined]
        self.last_verdict = verdict
        key = _verdict_key(verdict)
        if key != self._last_key:
            self._last_key = key
            outs.append(VerdictReady(verdict, self._t(self.fed)))

    def _end_answer(self, idx: int, outs: list[Output]) -> None:
        assert self._answer_start is not None and self._tracker is not None
        self._flush(idx, outs)
        start = self._answer_start
        duration = (idx - start) / self.sr
        self.speech_s += duration
        prosody = self._tracker.finish(duration_s=duration).to_dict()
        outs.append(AnswerEnded(self.answers, self._t(start), self._t(idx), prosody))
        self._answer_start = None
        self._tracker = None

    def _flush(self, idx: int, outs: list[Output]) -> None:
        seg = self.ring.slice(self._flushed, idx)
        self._flushed = max(self._flushed, idx)
        if seg.size == 0:
            return
        if self._tracker is not None:
            self._tracker.feed(seg)
        if self.watch is None or self.scoring_failed:
            return
        self.net_speech_s += seg.size / self.sr
        if self.watch.net_speech_s >= self.cfg.max_scored_s:
            return
        if self._skip:
            k = min(self._skip, seg.size)
            self._skip -= k
            self.skipped_s += k / self.sr
            seg = seg[k:]
            if seg.size == 0:
                return
        up = seg if self.sr == 16000 else resample_poly(seg, 2, 1, window=_UP2_FILTER).astype(np.float32)
        self._speech16k.append(up)
        self._speech16k_n += len(up)
        if self._speech16k_n >= self.cfg.score_chunk_s * 16000:
            self._score(outs, idx)

    def _score(self, outs: list[Output], idx: int, *, final: bool = False) -> None:
        """Score, then checkpoint when the accumulator embedded a new chunk (after the verdict, so the
        checkpoint carries it)."""
        self._score_once(outs, idx, final=final)
        chunks = getattr(self.watch, "chunks", None)
        if isinstance(chunks, int) and chunks != self._chunks and not self.scoring_failed:
            self._chunks = chunks
            outs.append(VoiceCheckpoint(self.checkpoint()))

    def _score_once(self, outs: list[Output], idx: int, *, final: bool = False) -> None:
        assert self.watch is not None
        speech = np.concatenate(self._speech16k) if self._speech16k else np.zeros(0, np.float32)
        self._speech16k, self._speech16k_n = [], 0
        try:
            if speech.size:
                self.watch.add(speech)
            net = self.watch.net_speech_s
            due = self._scored_at < 0 or net - self._scored_at >= self.cfg.rescore_s or final
            if net < self.watch.min_net_speech_s or not due:
                return
            self._scored_at = net
            if final and callable(getattr(self.watch, "finish", None)):
                self.watch.finish()  # type: ignore[attr-defined]
            verdict = self.watch.verdict()
        except CallvetError as exc:
            self.scoring_failed = True
            outs.append(ScoringFailed(exc.code, exc.message))
            return
        self.last_verdict = verdict
        key = _verdict_key(verdict)
        if key != self._last_key:
            self._last_key = key
            self._confirmed = False
            outs.append(VerdictReady(verdict, self._t(idx)))
        else:
            self._confirmed = True
        stride = self.cfg.stable_rescore_s - self.cfg.rescore_s
        if self._confirmed and stride > 0:
            self._skip = int(stride * self.sr)
