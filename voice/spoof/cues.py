"""Utterance-level cues that survive a phone line, for the spoof classifier (numpy only, 8 kHz input).

Why these: AASIST and frame-level LFCC-GMMs learn fine spectral detail that the 300-3400 Hz band,
mu-law and line noise destroy, so they do not carry over to unseen synthesisers and lines (measured:
EER ~50 % held out). What the line keeps is the *shape over time* of the voice:

- **F0 contour** (autocorrelation pitch tracker, 40 ms frames every 10 ms): diphone and HTS
  synthesisers and formant synthesisers (espeak-ng) produce very regular F0 -- small frame-to-frame
  steps, little jitter, long smooth voiced runs -- where human F0 jitters and jumps.
- **Periodicity** (normalised autocorrelation peak, an HNR proxy): synthetic excitation is cleaner
  than a human glottis; a loudspeaker + room smears it.
- **Long-term spectral flatness, flux, energy dynamics and the 2-8 Hz (syllabic) modulation** of the
  log-energy envelope: a room's reverberation fills the dips between syllables (replay), synthesisers
  have unnaturally steady syllable energy.
- **LFCC statistics** (mean and spread of the 20 static coefficients and of their deltas): the long-term
  colouring a loudspeaker and microphone add, as a fixed-length vector a small classifier can weigh.

:func:`cues` returns one vector of :data:`N_CUES` values in :data:`CUE_NAMES` order.
"""

from __future__ import annotations

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.spoof.features import lfcc

__all__ = ["CUE_NAMES", "N_CUES", "cues", "pitch_track"]

_SR = 8000
_WIN = 320
_HOP = 80
_NFFT = 1024
_LAG_MIN = _SR // 400
_LAG_MAX = _SR // 60
_VOICED = 0.5

_PROSODY = ["voiced_frac", "period_mean", "period_std", "f0_std_st", "f0_step_med", "f0_curv_mean",
            "f0_flat_frac", "f0_jump_frac", "voiced_run_s", "f0_step_p90"]
_SPECTRAL = ["flat_mean", "flat_std", "flux_mean", "flux_std", "loge_std", "mod_2_8hz", "loge_range",
             "hiband_mean", "hiband_std"]
_LFCC = [f"lfcc{i}_mean" for i in range(20)] + [f"lfcc{i}_std" for i in range(20)] + \
        [f"dlfcc{i}_std" for i in range(20)]
CUE_NAMES: tuple[str, ...] = tuple(_PROSODY + _SPECTRAL + _LFCC)
N_CUES = len(CUE_NAMES)

_HANN = np.hanning(_WIN)
_HANN_AC = np.fft.irfft(np.abs(np.fft.rfft(_HANN, _NFFT)) ** 2)[: _LAG_MAX + 2]
_HANN_AC = _HANN_AC / _HANN_AC[0]


def _frames(x: np.ndarray) -> np.ndarray:
    n = 1 + (len(x) - _WIN) // _HOP
    idx = np.arange(_WIN)[None, :] + _HOP * np.arange(n)[:, None]
    return x[idx]


def pitch_track(x8k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0 Hz, periodicity 0..1, log energy) per 10 ms frame; f0 is 0 where unvoiced."""
    x = np.asarray(x8k, dtype=np.float64).reshape(-1)
    if len(x) < _WIN * 2:
        raise InvalidInput("too little audio for a pitch track", code="too_little_speech")
    fr = _frames(x - x.mean())
    fr = fr - fr.mean(axis=1, keepdims=True)
    energy = np.log((fr**2).sum(axis=1) + 1e-10)
    ac = np.fft.irfft(np.abs(np.fft.rfft(fr * _HANN, _NFFT)) ** 2)[:, : _LAG_MAX + 2]
    ac = ac / (ac[:, :1] + 1e-12) / np.maximum(_HANN_AC, 1e-3)
    seg = ac[:, _LAG_MIN: _LAG_MAX + 1]
    # The shortest lag whose local peak is within 85 % of the best one: the window correction
    # favours long lags, and a sub-harmonic must not win over the true period (octave errors).
    top = seg.max(axis=1, keepdims=True)
    is_peak = np.zeros_like(seg, dtype=bool)
    is_peak[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    good = is_peak & (seg >= 0.85 * top)
    k = np.where(good.any(axis=1), np.argmax(good, axis=1), np.argmax(seg, axis=1))
    peak = seg[np.arange(len(seg)), k]
    lag = (k + _LAG_MIN).astype(np.float64)
    inner = (k > 0) & (k < seg.shape[1] - 1)
    a = seg[np.arange(len(seg)), np.clip(k - 1, 0, None)]
    c = seg[np.arange(len(seg)), np.clip(k + 1, None, seg.shape[1] - 1)]
    den = a - 2 * peak + c
    shift = np.where(inner & (np.abs(den) > 1e-9), 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    lag = lag + np.clip(shift, -0.5, 0.5)
    loud = energy > energy.max() - 8.0  # within ~35 dB of the loudest frame
    voiced = loud & (peak > _VOICED)
    f0 = np.where(voiced, _SR / lag, 0.0)
    return f0, np.clip(peak, 0, 1), energy


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _prosody(f0: np.ndarray, period: np.ndarray, energy: np.ndarray) -> list[float]:
    voiced = f0 > 0
    loud = energy > energy.max() - 8.0
    out = [float(voiced.sum() / max(1, loud.sum()))]
    pv = period[voiced] if voiced.sum() >= 2 else period[loud]
    out += [float(pv.mean()), float(pv.std())]
    runs = [(s, e) for s, e in _runs(voiced) if e - s >= 3]
    if not runs:
        return [*out, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    st = 12 * np.log2(np.maximum(f0, 1.0) / np.median(f0[voiced]))
    steps = np.concatenate([np.diff(st[s:e]) for s, e in runs])
    curv = np.concatenate([np.diff(st[s:e], 2) for s, e in runs if e - s >= 4] or [np.zeros(1)])
    a = np.abs(steps)
    out += [float(np.std(st[voiced])), float(np.median(a)), float(np.mean(np.abs(curv))),
            float(np.mean(a < 0.05)), float(np.mean(a > 1.5)),
            float(np.mean([e - s for s, e in runs]) * _HOP / _SR), float(np.quantile(a, 0.9))]
    return out


def _spectral(x: np.ndarray, energy: np.ndarray) -> list[float]:
    fr = _frames(x)
    spec = np.abs(np.fft.rfft(fr * _HANN, 512)) ** 2 + 1e-10
    freqs = np.fft.rfftfreq(512, 1 / _SR)
    band = (freqs >= 300) & (freqs <= 3400)
    hi = (freqs >= 2500) & (freqs <= 3400)
    loud = energy > energy.max() - 8.0
    s = spec[loud][:, band]
    flat = np.exp(np.mean(np.log(s), axis=1)) / np.mean(s, axis=1)
    logs = np.log(s)
    logs = logs - logs.mean(axis=1, keepdims=True)
    flux = np.sqrt(np.mean(np.diff(logs, axis=0) ** 2, axis=1)) if len(logs) > 1 else np.zeros(1)
    hib = spec[loud][:, hi].sum(axis=1) / spec[loud][:, band].sum(axis=1)
    env = energy - energy.mean()
    p = np.abs(np.fft.rfft(env * np.hanning(len(env)))) ** 2
    mf = np.fft.rfftfreq(len(env), _HOP / _SR)
    mod = float(p[(mf >= 2) & (mf <= 8)].sum() / (p[mf >= 0.5].sum() + 1e-12))
    le = energy[loud]
    return [float(flat.mean()), float(flat.std()), float(flux.mean()), float(flux.std()),
            float(le.std()), mod, float(np.quantile(energy, 0.95) - np.quantile(energy, 0.10)),
            float(hib.mean()), float(hib.std())]


def _lfcc_stats(x: np.ndarray) -> list[float]:
    f = lfcc(x)
    if len(f) < 2:
        return [0.0] * 60
    return [*f[:, :20].mean(axis=0), *f[:, :20].std(axis=0), *f[:, 20:40].std(axis=0)]


def cues(x8k: np.ndarray) -> np.ndarray:
    """The :data:`CUE_NAMES` vector of an 8 kHz recording (at least 80 ms of audio)."""
    x = np.asarray(x8k, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise InvalidInput("audio contains NaN or infinite samples", code="nan")
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0:
        raise InvalidInput("silent audio", code="too_little_speech")
    x = x / peak
    f0, period, energy = pitch_track(x)
    v = np.asarray(_prosody(f0, period, energy) + _spectral(x, energy) + _lfcc_stats(x), np.float64)
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
