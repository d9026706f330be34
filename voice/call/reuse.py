"""Voice reuse in a live call: a :class:`ReuseScorer` plugged into the call's voiceprint watch.

At every verdict (each time the voiceprint is re-checked as speech accumulates) the call's current print
is searched against the call-print store for other applicants' recent calls in the same voice, then
stored (replacing the call's earlier print), so calls that follow, and calls running at the same time,
find this one. The reuse fields join the verdict: ``voice_reuse``, ``reuse_matches`` (the other calls,
with applicant/case/application ids and scores), ``reuse_threshold`` and its expected false-match rate
per call. A store failure never loses the blacklist verdict: ``voice_reuse`` is then null with
``reuse_error``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from callvet.voice.callprints import Applicant, CallPrintStore

__all__ = ["ReuseScorer"]

log = logging.getLogger("callvet.calls")


class ReuseScorer:
    """A :class:`~callvet.voice.call.scoring.VerdictScorer`: the voice-reuse search at every verdict."""

    def __init__(self, store: CallPrintStore, call: Any, min_net_speech_s: float) -> None:
        self.store = store
        self.call_id = str(call.call_id)
        self.applicant = Applicant.from_params(getattr(call, "params", {}),
                                               getattr(call, "application_id", None))
        self.min_net_speech_s = float(min_net_speech_s)

    def add(self, speech16k: np.ndarray) -> None:
        """Reuse looks at the voiceprint, not at the speech."""

    def settle(self, verdict: dict[str, Any]) -> dict[str, Any]:
        """The last verdict's reuse result stands (the print was stored with it)."""
        return verdict

    def score(self, verdict: dict[str, Any], voiceprint: Any) -> dict[str, Any]:
        verdict = dict(verdict)
        try:
            looks = max(1.0, float(voiceprint.net_speech_s) / max(self.min_net_speech_s, 1e-3))
            reuse = self.store.search(voiceprint, self.applicant, exclude_call_id=self.call_id,
                                      looks_ratio=looks)
            self.store.upsert(self.call_id, self.applicant, voiceprint, reuse)
        except Exception as exc:
            log.exception("call %s: voice-reuse search failed", self.call_id)
            verdict.update(voice_reuse=None, reuse_error=f"{type(exc).__name__}")
            return verdict
        verdict.update(reuse.to_event())
        verdict["applicant"] = self.applicant.to_dict()
        return verdict
