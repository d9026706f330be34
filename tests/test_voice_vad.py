"""Silero VAD through onnxruntime: speech in a real recording, none in silence or noise; streaming
events agree with the offline segments."""

from __future__ import annotations

import numpy as np
import pytest
from callvet.voice.audio import resample
from callvet.voice.vad import VadStream, default_vad, net_speech_s, pauses
from speech import asterisk_concat


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    return asterisk_concat(["vm-intro", "vm-goodbye"], gap_s=1.5)


def test_offline_segments_find_speech_and_pause(recording: np.ndarray) -> None:
    vad = default_vad()
    for sr in (8000, 16000):
        x = recording if sr == 8000 else resample(recording, 8000, sr)
        segs = vad.segments(x, sr, min_silence_ms=300)
        assert len(segs) >= 2
        net = net_speech_s(segs)
        assert 0.5 * len(x) / sr < net < len(x) / sr
        assert max(e - s for s, e in pauses(segs)) >= 1.0


def test_no_speech_in_silence_or_noise() -> None:
    vad = default_vad()
    rng = np.random.default_rng(1)
    assert vad.segments(np.zeros(16000 * 2, np.float32), 16000) == []
    noise = rng.normal(0, 0.05, 16000 * 3).astype(np.float32)
    assert net_speech_s(vad.segments(noise, 16000)) < 0.3


def test_other_rates_are_resampled(recording: np.ndarray) -> None:
    x = resample(recording, 8000, 22050)
    assert net_speech_s(default_vad().segments(x, 22050)) > 1.0


def test_stream_events_match_offline_segments(recording: np.ndarray) -> None:
    offline = default_vad().segments(recording, 8000, min_silence_ms=700)
    stream = VadStream(sample_rate=8000, min_silence_ms=700)
    events = []
    for i in range(0, len(recording), 160):
        events += stream.feed(recording[i:i + 160])
    events += stream.flush()
    starts = [e.t_s for e in events if e.kind == "speech_start"]
    ends = [e.t_s for e in events if e.kind == "speech_end"]
    assert len(starts) == len(ends) == len(offline)
    for (s, e), s2, e2 in zip(offline, starts, ends, strict=True):
        assert abs(s - s2) < 0.15 and abs(e - e2) < 0.15
    assert not stream.in_speech


def test_stream_rejects_unsupported_rate() -> None:
    with pytest.raises(ValueError):
        VadStream(sample_rate=44100)


def test_vad_does_not_import_torch() -> None:
    """Serving runs onnxruntime only; the silero-vad package's own __init__ would pull in torch."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from callvet.voice.vad import SileroVad\n"
        "SileroVad().segments(np.zeros(16000, dtype=np.float32), 16000)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
