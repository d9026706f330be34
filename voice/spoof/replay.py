"""Simulated replay attacks: a recording played through a loudspeaker into a room and re-recorded.

Each attack draws a loudspeaker response (small-driver high-pass at 150-500 Hz, resonant peak, low-pass
at 4-12 kHz), an optional lossy step before playback (mu-law or 8 kHz bandwidth of the source
recording), a synthetic room impulse response (exponentially decaying noise, RT60 0.15-0.9 s, with
direct-path ratio), a microphone response and room noise, then the phone channel. Not covered: real
hardware non-linearities beyond soft clipping, playback over a second phone line, and high-quality
studio replay with flat responses (close to bona fide by construction).
"""

from __future__ import annotations

import numpy as np
from callvet.voice.audio import resample
from callvet.voice.g711 import mulaw_decode, mulaw_encode

__all__ = ["simulate_replay"]


def _rir(sr: int, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.9)
    n = int(sr * min(rt60, 0.6))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    h = tail * 10 ** (rng.uniform(-12, -3) / 20)
    h[0] = 1.0
    return h / np.sqrt(np.sum(h**2))


def simulate_replay(x: np.ndarray, sr: int, *, seed: int = 0) -> np.ndarray:
    """``x`` (bona fide, at ``sr``) as a replay re-recorded at ``sr`` (before the phone channel)."""
    from scipy.signal import butter, fftconvolve, iirpeak, lfilter, sosfilt

    rng = np.random.default_rng(seed)
    y = np.asarray(x, dtype=np.float64)
    if rng.random() < 0.4:
        y = resample(mulaw_decode(mulaw_encode(np.clip(y, -1, 1).astype(np.float32))), sr, sr)
    if rng.random() < 0.3:
        y = resample(resample(y.astype(np.float32), sr, 8000), 8000, sr).astype(np.float64)
    nyq = sr / 2
    hp = rng.uniform(150, 500)
    lp = min(rng.uniform(4000, 12000), nyq * 0.95)
    y = sosfilt(butter(2, hp, btype="high", fs=sr, output="sos"), y)
    y = sosfilt(butter(4, lp, btype="low", fs=sr, output="sos"), y)
    b, a = iirpeak(rng.uniform(600, 3000), rng.uniform(1.5, 5), fs=sr)
    y = y + rng.uniform(0.3, 1.0) * lfilter(b, a, y)
    y = np.tanh(y * rng.uniform(1, 3)) / rng.uniform(1, 3)
    y = fftconvolve(y, _rir(sr, rng))[: len(y)]
    y = sosfilt(butter(1, rng.uniform(80, 200), btype="high", fs=sr, output="sos"), y)
    p = float(np.mean(y**2)) + 1e-12
    y = y + rng.standard_normal(len(y)) * np.sqrt(p / 10 ** (rng.uniform(20, 40) / 10))
    peak = float(np.max(np.abs(y))) or 1.0
    return (y * (0.7 / peak)).astype(np.float32)
