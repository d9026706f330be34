"""Voiceprint scoring for live calls: the engine's accumulator, the blacklist search, then the scorers.

One :class:`VoiceScoring` per process (engine and blacklist are shared and loaded once); one
:class:`EngineWatch` per call, holding only the accumulator's running state and its plugged-in
:class:`VerdictScorer` processors: the spoof check (:class:`SpoofScorer`, always there: without a
detector its part says ``spoof_unavailable``) and voice reuse
(:class:`~callvet.voice.call.reuse.ReuseScorer`, with a call-print store). Each hears the same speech
and extends each verdict at the voiceprint's stride, never per frame; a new scorer is one more entry.

With a spoof detector the scorer keeps a :class:`~callvet.voice.spoof.SpoofWatch` fed with the speech;
every verdict carries ``spoof``.

The spoof check never delays a verdict: it runs on one process-wide ``spoof`` thread (the served cue
vector costs ~0.9x the voiceprint per second of speech, bench/spoof; the earlier AASIST back end cost
~0.45 core-s a window and tripled verdict latency inline), at most one check pending per call, and a
verdict carries the latest *finished* result
(``error: "pending"`` before the first). A changed flag emits a new verdict event at the next check;
at the end of the call the pending check is awaited so the call record has the result.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from callvet.core.errors import CallvetError
from callvet.voice.call.reuse import ReuseScorer

__all__ = ["SPOOF_UNAVAILABLE", "EngineWatch", "SpoofScorer", "VerdictScorer", "VoiceScoring", "verdict_dict"]


def verdict_dict(result: Any) -> dict[str, Any]:
    """An ``IdentifyResult`` as the JSON the robot and the call record get."""
    return {
        "alarm": bool(result.alarm),
        "review": bool(getattr(result, "review", False)),
        "threshold": round(float(result.threshold), 4),
        "review_threshold": getattr(result, "review_threshold", None),
        "tiers": getattr(result, "tiers", None),
        "net_speech_s": round(float(result.net_speech_s), 3),
        "matches": [
            {"identity_id": m.identity_id, "label": m.label, "score": round(float(m.score), 4),
             "llr": getattr(m, "llr", None)}
            for m in result.matches
        ],
    }


#: The verdict's ``spoof`` when no countermeasure is configured or it could not be built.
SPOOF_UNAVAILABLE = {"score": None, "flag": None, "kind": None, "error": "spoof_unavailable"}


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: How long the end of a call waits for its pending spoof check.
FINAL_WAIT_S = 10.0


def _spoof_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="spoof")
        return _pool


class VerdictScorer(Protocol):
    """One more look at the call's voice, plugged into the voiceprint stage (spoofing, voice reuse).

    It hears the same speech as the voiceprint (``add``) and extends each verdict at the voiceprint's
    stride (``score``, given the voiceprint just searched), so a new scorer never adds a per-frame
    cost. ``settle`` is the end of the call with no speech left to score: the scorer may finish work
    still running and update the last verdict. A scorer must not raise for its own failures: it puts
    its error in its part of the verdict, so the blacklist verdict is never lost."""

    def add(self, speech16k: np.ndarray) -> None: ...

    def score(self, verdict: dict[str, Any], voiceprint: Any) -> dict[str, Any]: ...

    def settle(self, verdict: dict[str, Any]) -> dict[str, Any]: ...


class SpoofScorer:
    """The spoof countermeasure's latest finished result as the verdict's ``spoof`` (see the module
    docstring: checks run on the one ``spoof`` thread, never delaying a verdict)."""

    def __init__(self, spoof: Any = None) -> None:
        self.spoof = spoof.watch() if spoof is not None else None
        self._fut: Future[Any] | None = None
        self._last: dict[str, Any] = {"score": None, "flag": None, "kind": None, "error": "pending"}

    def add(self, speech16k: np.ndarray) -> None:
        if self.spoof is not None:
            self.spoof.add(speech16k)

    def score(self, verdict: dict[str, Any], voiceprint: Any) -> dict[str, Any]:
        """The latest finished result; starts the next check in the background."""
        if self.spoof is None:
            return {**verdict, "spoof": dict(SPOOF_UNAVAILABLE)}
        self._collect()
        if self._fut is None:
            self._fut = _spoof_pool().submit(self.spoof.check)
        return {**verdict, "spoof": dict(self._last)}

    def settle(self, verdict: dict[str, Any]) -> dict[str, Any]:
        self.finish()
        return {**verdict, "spoof": self.now()}

    def now(self) -> dict[str, Any]:
        """The latest finished result, without starting a check."""
        if self.spoof is None:
            return dict(SPOOF_UNAVAILABLE)
        self._collect()
        return dict(self._last)

    def finish(self) -> None:
        """End of call: wait for the pending check, then score speech it has not seen (cheap once the
        call's AASIST budget is spent), so the final verdict and the record carry the call's result."""
        if self.spoof is None:
            return
        self._collect(timeout=FINAL_WAIT_S)
        if self._fut is None:
            self._fut = _spoof_pool().submit(self.spoof.check)
            self._collect(timeout=FINAL_WAIT_S)

    def _collect(self, timeout: float | None = None) -> None:
        fut = self._fut
        if fut is None or (timeout is None and not fut.done()):
            return
        try:
            res = fut.result(timeout=timeout)
        except TimeoutError:
            return
        except CallvetError as exc:
            res, self._last = None, {"score": None, "flag": None, "kind": None, "error": exc.code}
        self._fut = None
        if res is not None:
            self._last = res.to_dict()


class EngineWatch:
    """One call's voiceprint: the engine's accumulator searched against the blacklist, then each
    plugged-in :class:`VerdictScorer` in order. Speech in (``add``), verdicts out (``verdict``)."""

    def __init__(self, engine: Any, blacklist: Any, top_k: int, spoof: Any = None, *,
                 scorers: list[VerdictScorer] | None = None) -> None:
        self.acc = engine.accumulator()
        self.blacklist = blacklist
        self.top_k = top_k
        self.min_net_speech_s = float(engine.min_net_speech_s)
        self.last_voiceprint: Any = None
        self.scorers: list[VerdictScorer] = [SpoofScorer(spoof), *(scorers or [])]

    @property
    def net_speech_s(self) -> float:
        return float(self.acc.net_speech_s)

    @property
    def chunks(self) -> int:
        return int(self.acc.chunks)

    def state(self) -> dict[str, Any]:
        """The accumulator's resumable state (issue 17); the scorers' own state is not carried over."""
        return self.acc.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.acc.restore(state)

    def embed_pending(self) -> None:
        self.acc.embed_pending()

    def add(self, speech16k: np.ndarray) -> None:
        self.acc.add(speech16k)
        for s in self.scorers:
            s.add(speech16k)

    def verdict(self) -> dict[str, Any]:
        """A call looks again as speech grows, so its thresholds count the looks (see docs/blacklist.md)."""
        vp = self.acc.voiceprint()
        self.last_voiceprint = vp
        ratio = getattr(self.blacklist, "call_looks_ratio", None)
        kw = {"looks_ratio": ratio()} if ratio is not None else {}
        out = verdict_dict(self.blacklist.identify_voiceprint(vp, top_k=self.top_k, **kw))
        for s in self.scorers:
            out = s.score(out, vp)
        return out

    def settle(self, verdict: dict[str, Any]) -> dict[str, Any]:
        """The end of the call with no speech left to score: each scorer settles the last verdict."""
        for s in self.scorers:
            verdict = s.settle(verdict)
        return verdict

    def finish(self) -> None:
        """The end of the call before its last verdict: scorers' pending work completes."""
        for s in self.scorers:
            finish = getattr(s, "finish", None)
            if callable(finish):
                finish()


class VoiceScoring:
    """``callprints`` (a :class:`~callvet.voice.callprints.CallPrintStore`, optional) keeps each call's
    print and adds the voice-reuse search to every verdict (:mod:`callvet.voice.call.reuse`); ``spoof``
    (a spoof detector, optional) adds the countermeasure's result."""

    def __init__(self, engine: Any, blacklist: Any, *, top_k: int = 5, callprints: Any = None,
                 spoof: Any = None) -> None:
        self.engine = engine
        self.blacklist = blacklist
        self.top_k = top_k
        self.callprints = callprints
        self.spoof = spoof

    @property
    def min_net_speech_s(self) -> float:
        return float(self.engine.min_net_speech_s)

    def watch(self, call: Any = None) -> EngineWatch:
        """A call's watch: blacklist, then the spoof check, then (with a call-print store and a call)
        the voice-reuse search."""
        scorers: list[VerdictScorer] = []
        if self.callprints is not None and call is not None:
            scorers.append(ReuseScorer(self.callprints, call, float(self.engine.min_net_speech_s)))
        return EngineWatch(self.engine, self.blacklist, self.top_k, self.spoof, scorers=scorers)
