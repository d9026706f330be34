"""Hesitation and tone, measured against the caller's own baseline in this call.

People differ in how fast and how loudly they speak; what signals a made-up answer is a change from how
this caller answered the questions before (z-scores against earlier answers), so the first answers build
the baseline and only fixed, generous absolute limits apply until then.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FEATURES", "NUMBER_TYPES", "delivery", "features_of", "hesitation", "lookup_delay"]

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


# ---------------------------------------------------------------- delivery per answer type (issue 13)

#: Answer types a person who holds only the form has to find on the sheet before answering.
NUMBER_TYPES = frozenset({"date", "digits", "amount"})
#: An answer counts as looked up when it comes this much later than the caller's own word answers.
LOOKUP_EXCESS_S = 2.0
LOOKUP_MIN_DELAY_S = 2.5


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else 0.5 * (ys[n // 2 - 1] + ys[n // 2])


def lookup_delay(answer_type: str, delay: float | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    """How much later than this caller's own word answers (names, places, choices) a number came.

    A real owner says his birth date or mobile at once (he may pause on income); someone reading the
    form is quick on names and slow on every number he must find. The baseline is the median delay of
    the earlier non-number answers in this call, so a slow speaker is compared with himself.
    """
    if delay is None or answer_type not in NUMBER_TYPES:
        return {"excess_s": None, "looked_up": False}
    words = [float(h["features"]["delay_s"]) for h in history
             if h.get("answer_type") not in NUMBER_TYPES and "delay_s" in (h.get("features") or {})]
    if not words:
        return {"excess_s": None, "looked_up": False}
    excess = delay - _median(words)
    return {"excess_s": round(excess, 3),
            "looked_up": excess >= LOOKUP_EXCESS_S and delay >= LOOKUP_MIN_DELAY_S}


def delivery(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Reading-like delivery over the whole call so far: every answer after the same pause, at the same
    speech rate, without a filler or a pause inside, whatever was asked. People answering from memory
    are quick on some facts and slow on others; someone reading a prepared sheet is not.

    Needs six answers with timing; ``scripted`` is True when the delays' spread is under 0.12 s, the
    speech rate varies by under 3 % and no answer had a pause or a filler word."""
    feats = [h["features"] for h in history if "delay_s" in (h.get("features") or {})]
    rates = [f["speech_rate"] for f in feats if f.get("speech_rate")]
    if len(feats) < 6 or len(rates) < 6:
        return {"scripted": False, "answers": len(feats)}
    delays = [f["delay_s"] for f in feats]
    md, mr = sum(delays) / len(delays), sum(rates) / len(rates)
    sd_d = math.sqrt(sum((d - md) ** 2 for d in delays) / (len(delays) - 1))
    cv_r = math.sqrt(sum((r - mr) ** 2 for r in rates) / (len(rates) - 1)) / max(mr, 1e-6)
    paused = any(f.get("pause_count", 0) > 0 for f in feats)
    fillers = any("filler_words" in (h.get("flags") or []) for h in history)
    scripted = sd_d <= 0.12 and cv_r <= 0.03 and not paused and not fillers
    return {"scripted": scripted, "answers": len(feats), "delay_sd_s": round(sd_d, 3),
            "rate_cv": round(cv_r, 3)}
