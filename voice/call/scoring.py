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

    @property
    def net_speech_s(self) -> float:
        return float(self.acc.net_speech_s)

    def add(self, speech16k: np.ndarray) -> None:
        self.acc.add(speech16k)

    def verdict(self) -> dict[str, Any]:
        """A call looks again as speech grows, so its thresholds count the looks (see docs/blacklist.md)."""
        vp = self.acc.voiceprint()
        ratio = getattr(self.blacklist, "call_looks_ratio", None)
        kw = {"looks_ratio": ratio()} if ratio is not None else {}
        return verdict_dict(self.blacklist.identify_voiceprint(vp, top_k=self.top_k, **kw))


class VoiceScoring:
    def __init__(self, engine: Any, blacklist: Any, *, top_k: int = 5) -> None:
        self.engine = engine
        self.blacklist = blacklist
        self.top_k = top_k

    @property
    def min_net_speech_s(self) -> float:
        return float(self.engine.min_net_speech_s)

    def watch(self) -> EngineWatch:
        return EngineWatch(self.engine, self.blacklist, self.top_k)
