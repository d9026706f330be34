"""Simulated telephone channels, for enrolment and for training the back end.

A blacklist sample often comes clean (a recorded complaint call, a seized voice memo) while the probe
always comes over a phone line. Passing the enrolment speech through several plausible lines (band
limits, G.711 mu-law/A-law, noise at various SNRs, GSM-like low-pass) and averaging the prints puts the
enrolled identity where its phone calls will land; training the back end on such copies teaches it
that the channel is within-speaker variance. The lines are deliberately varied rather than a copy of any
one test channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from callvet.voice.audio import resample
from callvet.voice.g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode

__all__ = ["CHANNELS", "Channel", "apply_channel", "channel_copies"]


@dataclass(frozen=True)
class Channel:
    """One simulated line: pass band, codec and noise."""

    name: str
    low_hz: float = 300.0
    high_hz: float = 3400.0
    codec: str = "mulaw"  # mulaw | alaw | none
    snr_db: float | None = 15.0
    noise: str = "white"  # white | pink | babble-like brown
    gain_db: float = 0.0


CHANNELS: tuple[Channel, ...] = (
    Channel("pstn_mulaw_15db", 300, 3400, "mulaw", 15.0, "white"),
    Channel("pstn_alaw_20db", 300, 3400, "alaw", 20.0, "pink"),
    Channel("narrow_mulaw_10db", 350, 3200, "mulaw", 10.0, "white", -6.0),
    Channel("gsm_like_25db", 200, 3000, "alaw", 25.0, "brown", 6.0),
    Channel("wideband_noisy_12db", 100, 3800, "none", 12.0, "pink"),
)


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    y = np.fft.irfft(spec, n)
    return y / (np.std(y) + 1e-12)


def apply_channel(x: np.ndarray, sample_rate: int, ch: Channel, *, seed: int = 0) -> np.ndarray:
    """``x`` through ``ch`` at 8 kHz (as a phone network carries it), returned at ``sample_rate``."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    y = resample(np.asarray(x, dtype=np.float32), sample_rate, 8000).astype(np.float64)
    high = min(ch.high_hz, 3900.0)
    sos = butter(4, [ch.low_hz, high], btype="band", fs=8000, output="sos")
    y = sosfilt(sos, y)
    if ch.snr_db is not None:
        p = float(np.mean(y**2)) + 1e-12
        y = y + _noise(ch.noise, len(y), rng) * np.sqrt(p / 10 ** (ch.snr_db / 10))
    y = y * 10 ** (ch.gain_db / 20)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    y32 = y.astype(np.float32)
    if ch.codec == "mulaw":
        y32 = mulaw_decode(mulaw_encode(y32))
    elif ch.codec == "alaw":
        y32 = alaw_decode(alaw_encode(y32))
    return resample(y32, 8000, sample_rate)


def channel_copies(
    x: np.ndarray, sample_rate: int, *, channels: tuple[Channel, ...] = CHANNELS, seed: int = 0
) -> list[np.ndarray]:
    """One copy of ``x`` per channel (deterministic for a given seed)."""
    return [apply_channel(x, sample_rate, ch, seed=seed + i) for i, ch in enumerate(channels)]
