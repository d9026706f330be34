"""Real speech for tests, made on this machine: espeak-ng voices and Asterisk's recorded prompts.

Tests never read the development corpus (a user's clone has none). Asterisk's prompts (Debian
asterisk-core-sounds-en-wav) are one real human speaker at 8 kHz; espeak-ng gives as many distinct
synthetic speakers as needed via voice variants.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

__all__ = [
    "ASTERISK_DIR",
    "asterisk",
    "asterisk_concat",
    "espeak",
    "phone_channel",
    "to_mulaw",
    "to_wav_bytes",
]

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2"]


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; ./dev test installs it (Debian package)")


@lru_cache(maxsize=256)
def _espeak_cached(text: str, voice: str, rate: int, pitch: int) -> tuple[bytes, int]:
    _need("espeak-ng")
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def espeak(text: str, voice: str = "en-us", *, rate: int = 160, pitch: int = 50,
           sample_rate: int = 16000) -> np.ndarray:
    """Speech as float32 in [-1, 1] at ``sample_rate``; ``voice`` like ``en-us+m3`` picks a speaker."""
    from scipy.signal import resample_poly

    raw, sr = _espeak_cached(text, voice, rate, pitch)
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if sr != sample_rate:
        g = np.gcd(sr, sample_rate)
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
    return x


def asterisk(name: str, sample_rate: int = 8000) -> np.ndarray:
    """One Asterisk prompt (a real recording at 8 kHz), e.g. ``asterisk('vm-intro')``."""
    from scipy.signal import resample_poly

    path = ASTERISK_DIR / f"{name}.wav"
    if not path.exists():
        pytest.fail(f"{path} missing; ./dev test installs asterisk-core-sounds-en-wav")
    with wave.open(str(path)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if sr != sample_rate:
        g = np.gcd(sr, sample_rate)
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
    return x


def asterisk_concat(names: list[str], sample_rate: int = 8000, gap_s: float = 0.3) -> np.ndarray:
    gap = np.zeros(int(gap_s * sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    for n in names:
        parts += [asterisk(n, sample_rate), gap]
    return np.concatenate(parts)


def to_wav_bytes(x: np.ndarray, sample_rate: int, *, channels: int = 1, sampwidth: int = 2) -> bytes:
    """PCM WAV bytes; a mono signal is duplicated when ``channels`` is 2."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    if channels == 2:
        x = np.stack([x, x], axis=1).reshape(-1)
    if sampwidth == 2:
        data = (x * 32767).astype("<i2").tobytes()
    elif sampwidth == 4:
        data = (x * 2147483647).astype("<i4").tobytes()
    elif sampwidth == 1:
        data = ((x * 127) + 128).astype(np.uint8).tobytes()
    elif sampwidth == 3:
        v = (x * 8388607).astype("<i4")
        data = np.stack([(v & 0xFF), (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raise ValueError(sampwidth)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(sample_rate)
        w.writeframes(data)
    return buf.getvalue()


def to_mulaw(x: np.ndarray) -> bytes:
    """ITU-T G.711 mu-law bytes of a float signal (what a phone network carries), written out here so
    tests check the service's decoder against an independent encoder."""
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767), -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(np.maximum((mag >> 7) & 0xFF, 1))).astype(np.int32)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def phone_channel(x: np.ndarray, sample_rate: int, *, snr_db: float = 15.0, seed: int = 0) -> np.ndarray:
    """300-3400 Hz band-pass, additive noise at ``snr_db`` and a mu-law round trip."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, [300, 3400], btype="band", fs=sample_rate, output="sos")
    y = sosfilt(sos, x).astype(np.float32)
    rng = np.random.default_rng(seed)
    p = float(np.mean(y**2)) + 1e-12
    y = y + rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), y.shape).astype(np.float32)
    mu = 255.0
    yc = np.clip(y, -1, 1)
    enc = np.round((np.sign(yc) * np.log1p(mu * np.abs(yc)) / np.log1p(mu) + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(enc) * ((1 + mu) ** np.abs(enc) - 1) / mu).astype(np.float32)
