"""Prosody measured on real (synthetic) speech: espeak at known rates and pitches."""

from __future__ import annotations

import numpy as np
import pytest
from callvet.voice.call.prosody import ProsodyTracker, analyse
from speech import asterisk, espeak

TEXT = "I bought the card last spring and I use it for groceries and fuel every week."


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("voice", ["en-us+m3", "en-us+f2"])
def test_speech_rate_follows_espeak_rate(sr: int, voice: str) -> None:
    slow = analyse(espeak(TEXT, voice, rate=120, sample_rate=sr), sr)
    fast = analyse(espeak(TEXT, voice, rate=220, sample_rate=sr), sr)
    assert fast.speech_rate > slow.speech_rate * 1.1
    assert fast.duration_s < slow.duration_s * 0.75
    assert 2.0 < slow.speech_rate < 8.0 and slow.syllables >= 12


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("voice", ["en-us+m3", "en-us+f2"])
def test_pitch_follows_espeak_pitch(sr: int, voice: str) -> None:
    low = analyse(espeak(TEXT, voice, pitch=30, sample_rate=sr), sr)
    high = analyse(espeak(TEXT, voice, pitch=80, sample_rate=sr), sr)
    assert low.pitch_mean_hz is not None and high.pitch_mean_hz is not None
    assert high.pitch_mean_hz > low.pitch_mean_hz * 1.2
    assert 60 < low.pitch_mean_hz < 400 and low.pitch_range_st is not None and low.pitch_range_st > 0


def test_pitch_of_a_pure_tone() -> None:
    t = np.arange(16000) / 8000
    f = analyse((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 8000)
    assert f.pitch_mean_hz == pytest.approx(150, rel=0.01)
    assert f.pitch_std_st is not None and f.pitch_std_st < 0.1


def test_inner_pauses_are_counted() -> None:
    a, b = espeak("yes I did", sample_rate=8000), espeak("last year in March", sample_rate=8000)
    gap = np.zeros(int(0.8 * 8000), np.float32)
    one = analyse(np.concatenate([a, b]), 8000)
    two = analyse(np.concatenate([a, gap, b, gap, a]), 8000)
    assert two.pause_count == 2 and one.pause_count <= 1
    assert two.pause_total_s >= one.pause_total_s + 1.5


def test_energy_follows_level() -> None:
    x = espeak(TEXT, sample_rate=8000)
    loud, quiet = analyse(x * 0.9, 8000), analyse(x * 0.3, 8000)
    assert loud.energy_mean_db is not None and quiet.energy_mean_db is not None
    assert loud.energy_mean_db - quiet.energy_mean_db == pytest.approx(9.54, abs=1.0)


def test_incremental_equals_whole_on_a_human_recording() -> None:
    x = asterisk("vm-intro")
    t = ProsodyTracker(8000)
    for i in range(0, len(x), 160):
        t.feed(x[i : i + 160])
    inc, whole = t.finish(), analyse(x, 8000)
    assert inc.to_dict() == whole.to_dict()
    assert whole.pitch_mean_hz is not None and 70 < whole.pitch_mean_hz < 300


def test_silence_and_bounded_memory() -> None:
    f = analyse(np.zeros(4000, np.float32), 8000)
    assert f.syllables == 0 and f.pitch_mean_hz is None
    t = ProsodyTracker(8000, max_s=1.0)
    t.feed(espeak(TEXT, sample_rate=8000))
    assert t.finish().truncated
