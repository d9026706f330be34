"""Hesitation and tone, measured against the caller's own baseline in this call.

People differ in how fast and how loudly they speak; what signals a made-up answer is a change from how
this caller answered the questions before (z-scores against earlier answers), so the first answers build
the baseline and only fixed, generous absolute limits apply until then.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FEATURES", "features_of", "hesitation"]

FEATURES = (
    "delay_s",
    "pause_total_s",
    "pause_count",
    "speech_rate",
    "pitch_mean",
    "pitch_std",
    "energy_mean",
    "energy_std",
)
# Smallest spread assumed per feature, so a caller who was very regular so far does not get huge z-scores.
_FLOOR = {
    "delay_s": 0.4,
    "pause_total_s": 0.3,
    "pause_count": 0.7,
    "speech_rate": 0.4,
    "pitch_mean": 8.0,
    "pitch_std": 4.0,
    "energy_mean": 0.05,
    "energy_std": 0.03,
    "pitch_mean_hz": 8.0,
    "pitch_std_st": 0.5,
    "energy_mean_db": 1.5,
    "energy_std_db": 1.0,
}
_MIN_BASELINE = 2


def features_of(timing: dict[str, Any] | None, prosody: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    timing = timing or {}
    prosody = prosody or {}
    if timing.get("delay_s") is not None:
        out["delay_s"] = float(timing["delay_s"])
    pauses = timing.get("pauses")
    if isinstance(pauses, list):
        vals = [float(p) for p in pauses if isinstance(p, int | float)]
        out["pause_total_s"] = sum(vals)
        out["pause_count"] = float(len(vals))
    if timing.get("speech_rate") is not None:
        out["speech_rate"] = float(timing["speech_rate"])
    # The call server reports pitch in Hz and semitones and energy in dB (voice/call/prosody.py); both
    # that and plain linear values are accepted, each compared only with itself.
    for k in (
        "pitch_mean",
        "pitch_std",
        "energy_mean",
        "energy_std",
        "pitch_mean_hz",
        "pitch_std_st",
        "energy_mean_db",
        "energy_std_db",
    ):
        if isinstance(prosody.get(k), int | float):
            out[k] = float(prosody[k])
    for k in ("pause_count", "pause_total_s", "speech_rate"):
        if k not in out and isinstance(prosody.get(k), int | float):
            out[k] = float(prosody[k])
    return {k: v for k, v in out.items() if math.isfinite(v)}


def hesitation(current: dict[str, float], history: list[dict[str, float]]) -> dict[str, Any]:
    """z-scores of this answer against earlier ones, a 0..1 hesitation score and flags."""
    z: dict[str, float] = {}
    for k, v in current.items():
        prev = [h[k] for h in history if k in h]
        if len(prev) < _MIN_BASELINE:
            continue
        mean = sum(prev) / len(prev)
        sd = math.sqrt(sum((x - mean) ** 2 for x in prev) / (len(prev) - 1))
        z[k] = (v - mean) / max(sd, _FLOOR.get(k, 1.0))
    flags: list[str] = []
    delay = current.get("delay_s")
    score_parts: list[float] = []
    if "delay_s" in z:
        score_parts.append(z["delay_s"])
    elif delay is not None:
        score_parts.append((delay - 2.5) / 1.0)
    if "pause_total_s" in z:
        score_parts.append(0.7 * z["pause_total_s"])
    if "speech_rate" in z:
        score_parts.append(-0.5 * z["speech_rate"])
    raw = max(score_parts) if score_parts else 0.0
    score = 1.0 / (1.0 + math.exp(-(raw - 2.0) * 1.5))
    if raw >= 2.0:
        flags.append("hesitant")
    tone_keys = ("pitch_mean", "energy_mean", "pitch_std", "pitch_mean_hz", "energy_mean_db", "pitch_std_st")
    tone = max((abs(z[k]) for k in tone_keys if k in z), default=0.0)
    if tone >= 3.0:
        flags.append("tone_shift")
    if delay is not None and delay < 0.25:
        flags.append("very_fast")
    return {
        "z": {k: round(v, 2) for k, v in z.items()},
        "score": round(score, 3),
        "flags": flags,
        "baseline_answers": min((sum(1 for h in history if k in h) for k in current), default=0),
    }
