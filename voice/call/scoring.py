"""Voiceprint scoring for live calls: the engine's accumulator plus the blacklist search.

One :class:`VoiceScoring` per process (engine and blacklist are shared and loaded once); one
:class:`EngineWatch` per call, holding only the accumulator's running state. With a spoof detector the
watch also keeps a :class:`~callvet.voice.spoof.SpoofWatch` fed with the same speech, scored once per
voiceprint check (so at the voiceprint's stride, never per frame); every verdict carries ``spoof``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SPOOF_UNAVAILABLE", "EngineWatch", "VoiceScoring", "verdict_dict"]


def verdict_dict(result: Any) -> dict[str, Any]:
    """An ``IdentifyResult`` as the JSON the robot and the call record get."""
    return {
        "alarm": bool(result.alarm),
        "threshold": round(float(result.threshold), 4),
        "net_speech_s": round(float(result.net_speech_s), 3),
        "matches": [
            {"identity_id": m.identity_id, "label": m.label, "score": round(float(m.score), 4)}
            for m in result.matches
        ],
    }


#: The verdict's ``spoof`` when no countermeasure is configured or it could not be built.
SPOOF_UNAVAILABLE = {"score": None, "flag": None, "kind": None, "error": "spoof_unavailable"}


class EngineWatch:
    def __init__(self, engine: Any, blacklist: Any, top_k: int, spoof: Any = None) -> None:
        self.acc = engine.accumulator()
        self.blacklist = blacklist
        self.top_k = top_k
        self.min_net_speech_s = float(engine.min_net_speech_s)
        self.spoof = spoof.watch() if spoof is not None else None

    @property
    def net_speech_s(self) -> float:
        return float(self.acc.net_speech_s)

    def add(self, speech16k: np.ndarray) -> None:
        self.acc.add(speech16k)
        if self.spoof is not None:
            self.spoof.add(speech16k)

    def verdict(self) -> dict[str, Any]:
        vp = self.acc.voiceprint()
        out = verdict_dict(self.blacklist.identify_voiceprint(vp, top_k=self.top_k))
        out["spoof"] = self.spoof_verdict()
        return out

    def spoof_verdict(self) -> dict[str, Any]:
        """The call's spoof result so far (a failing countermeasure never fails the voiceprint)."""
        from callvet.core.errors import CallvetError

        if self.spoof is None:
            return dict(SPOOF_UNAVAILABLE)
        try:
            res = self.spoof.check()
        except CallvetError as exc:
            return {"score": None, "flag": None, "kind": None, "error": exc.code}
        return res.to_dict() if res is not None else {"score": None, "flag": None, "kind": None,
                                                      "error": "too_little_speech"}


class VoiceScoring:
    def __init__(self, engine: Any, blacklist: Any, *, top_k: int = 5, spoof: Any = None) -> None:
        self.engine = engine
        self.blacklist = blacklist
        self.top_k = top_k
        self.spoof = spoof

    @property
    def min_net_speech_s(self) -> float:
        return float(self.engine.min_net_speech_s)

    def watch(self) -> EngineWatch:
        return EngineWatch(self.engine, self.blacklist, self.top_k, self.spoof)
