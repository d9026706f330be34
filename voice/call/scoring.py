"""Voiceprint scoring for live calls: the engine's accumulator plus the blacklist search.

One :class:`VoiceScoring` per process (engine and blacklist are shared and loaded once); one
:class:`EngineWatch` per call, holding only the accumulator's running state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EngineWatch", "VoiceScoring", "verdict_dict"]


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


class EngineWatch:
    def __init__(self, engine: Any, blacklist: Any, top_k: int) -> None:
        self.acc = engine.accumulator()
        self.blacklist = blacklist
        self.top_k = top_k
        self.min_net_speech_s = float(engine.min_net_speech_s)
        self.last_voiceprint: Any = None

    @property
    def net_speech_s(self) -> float:
        return float(self.acc.net_speech_s)

    def add(self, speech16k: np.ndarray) -> None:
        self.acc.add(speech16k)

    def verdict(self) -> dict[str, Any]:
        """A call looks again as speech grows, so its thresholds count the looks (see docs/blacklist.md)."""
        vp = self.acc.voiceprint()
        self.last_voiceprint = vp
        ratio = getattr(self.blacklist, "call_looks_ratio", None)
        kw = {"looks_ratio": ratio()} if ratio is not None else {}
        return verdict_dict(self.blacklist.identify_voiceprint(vp, top_k=self.top_k, **kw))


class VoiceScoring:
    """``callprints`` (a :class:`~callvet.voice.callprints.CallPrintStore`, optional) keeps each call's
    print and adds the voice-reuse search to every verdict (:mod:`callvet.voice.call.reuse`)."""

    def __init__(self, engine: Any, blacklist: Any, *, top_k: int = 5, callprints: Any = None) -> None:
        self.engine = engine
        self.blacklist = blacklist
        self.top_k = top_k
        self.callprints = callprints

    @property
    def min_net_speech_s(self) -> float:
        return float(self.engine.min_net_speech_s)

    def watch(self, call: Any = None) -> Any:
        watch = EngineWatch(self.engine, self.blacklist, self.top_k)
        if self.callprints is None or call is None:
            return watch
        from callvet.voice.call.reuse import ReuseWatch

        return ReuseWatch(watch, self.callprints, call)
