"""Voiceprint scoring for live calls: the engine's accumulator plus the blacklist search.

One :class:`VoiceScoring` per process (engine and blacklist are shared and loaded once); one
:class:`EngineWatch` per call, holding only the accumulator's running state. With a spoof detector the
watch also keeps a :class:`~callvet.voice.spoof.SpoofWatch` fed with the same speech, scored once per
voiceprint check (so at the voiceprint's stride, never per frame); every verdict carries ``spoof``.

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
from typing import Any

import numpy as np

__all__ = ["SPOOF_UNAVAILABLE", "EngineWatch", "VoiceScoring", "verdict_dict"]


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


class EngineWatch:
    def __init__(self, engine: Any, blacklist: Any, top_k: int, spoof: Any = None) -> None:
        self.acc = engine.accumulator()
        self.blacklist = blacklist
        self.top_k = top_k
        self.min_net_speech_s = float(engine.min_net_speech_s)
        self.last_voiceprint: Any = None
        self.spoof = spoof.watch() if spoof is not None else None
        self._fut: Future[Any] | None = None
        self._spoof_last: dict[str, Any] = {"score": None, "flag": None, "kind": None, "error": "pending"}

    @property
    def net_speech_s(self) -> float:
        return float(self.acc.net_speech_s)

    def add(self, speech16k: np.ndarray) -> None:
        self.acc.add(speech16k)
        if self.spoof is not None:
            self.spoof.add(speech16k)

    def verdict(self) -> dict[str, Any]:
        """A call looks again as speech grows, so its thresholds count the looks (see docs/blacklist.md)."""
        vp = self.acc.voiceprint()
        self.last_voiceprint = vp
        ratio = getattr(self.blacklist, "call_looks_ratio", None)
        kw = {"looks_ratio": ratio()} if ratio is not None else {}
        out = verdict_dict(self.blacklist.identify_voiceprint(vp, top_k=self.top_k, **kw))
        out["spoof"] = self.spoof_verdict()
        return out
    def spoof_verdict(self) -> dict[str, Any]:
        """The call's latest finished spoof result; starts the next check in the background (a failing
        countermeasure never fails the voiceprint)."""
        if self.spoof is None:
            return dict(SPOOF_UNAVAILABLE)
        self._collect()
        if self._fut is None:
            self._fut = _spoof_pool().submit(self.spoof.check)
        return dict(self._spoof_last)

    def _collect(self, timeout: float | None = None) -> None:
        from callvet.core.errors import CallvetError

        fut = self._fut
        if fut is None or (timeout is None and not fut.done()):
            return
        try:
            res = fut.result(timeout=timeout)
        except TimeoutError:
            return
        except CallvetError as exc:
            res, self._spoof_last = None, {"score": None, "flag": None, "kind": None, "error": exc.code}
        self._fut = None
        if res is not None:
            self._spoof_last = res.to_dict()

    def spoof_now(self) -> dict[str, Any]:
        """The latest finished spoof result, without starting a check."""
        if self.spoof is None:
            return dict(SPOOF_UNAVAILABLE)
        self._collect()
        return dict(self._spoof_last)

    def finish(self) -> None:
        """End of call: wait for the pending check, then score speech it has not seen (cheap once the
        call's AASIST budget is spent), so the final verdict and the record carry the call's result."""
        if self.spoof is None:
            return
        self._collect(timeout=FINAL_WAIT_S)
        if self._fut is None:
            self._fut = _spoof_pool().submit(self.spoof.check)
            self._collect(timeout=FINAL_WAIT_S)


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

    def watch(self, call: Any = None) -> Any:
        watch = EngineWatch(self.engine, self.blacklist, self.top_k, self.spoof)
        if self.callprints is None or call is None:
            return watch
        from callvet.voice.call.reuse import ReuseWatch

        return ReuseWatch(watch, self.callprints, call)
