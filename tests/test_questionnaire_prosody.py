"""Hesitation and tone relative to the caller's own baseline."""

from __future__ import annotations

from callvet.questionnaire.prosody import features_of, hesitation


def _calm(delay: float) -> dict[str, float]:
    return features_of(
        {"delay_s": delay, "pauses": [0.2], "speech_rate": 3.5}, {"pitch_mean": 150, "energy_mean": 0.1}
    )


def test_slow_caller_is_not_hesitant_against_own_baseline() -> None:
    history = [_calm(3.0), _calm(3.2), _calm(2.9)]
    assert "hesitant" not in hesitation(_calm(3.3), history)["flags"]


def test_long_delay_against_baseline_is_hesitant() -> None:
    history = [_calm(0.8), _calm(0.9), _calm(1.0)]
    out = hesitation(_calm(3.5), history)
    assert "hesitant" in out["flags"] and out["z"]["delay_s"] > 2 and out["score"] > 0.5


def test_absolute_limit_before_a_baseline_exists() -> None:
    assert "hesitant" in hesitation(_calm(6.0), [])["flags"]
    assert "hesitant" not in hesitation(_calm(1.5), [])["flags"]


def test_tone_shift_and_call_server_keys() -> None:
    base = [
        features_of({"delay_s": 1}, {"pitch_mean_hz": 120 + i, "energy_mean_db": -30.0 - i}) for i in range(3)
    ]
    cur = features_of({"delay_s": 1}, {"pitch_mean_hz": 180, "energy_mean_db": -31.0, "pause_count": 2})
    assert cur["pause_count"] == 2
    assert "tone_shift" in hesitation(cur, base)["flags"]


def test_very_fast_and_garbage_ignored() -> None:
    feats = features_of({"delay_s": 0.1, "pauses": [0.1, "x"]}, {"pitch_mean": float("nan")})
    assert "pitch_mean" not in feats and feats["pause_count"] == 1
    assert "very_fast" in hesitation(feats, [])["flags"]
