"""LFCC features in numpy (as the ASVspoof LFCC baseline computes them, at 8 kHz); their statistics
are part of :mod:`callvet.voice.spoof.cues`.

Features are computed on the 8 kHz signal every phone call carries: 20 ms Hamming frames every 10 ms,
256-point FFT, 20 linear-frequency triangular filters over 0-4 kHz, log, DCT-II to 20 coefficients, plus
deltas and delta-deltas (60 dimensions), per-utterance mean removal left out on purpose: the channel
colouring a loudspeaker and a room add is what the replay model has to see.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lfcc"]

_SR = 8000
_N_FFT = 256
_WIN = 160
_HOP = 80
_N_FILT = 20
_N_CEP = 20


def _filterbank() -> np.ndarray:
    edges = np.linspace(0, _SR / 2, _N_FILT + 2)
    bins = np.fft.rfftfreq(_N_FFT, 1 / _SR)
    fb = np.zeros((_N_FILT, len(bins)), dtype=np.float64)
    for i in range(_N_FILT):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


def _dct_matrix() -> np.ndarray:
    n = np.arange(_N_FILT)
    k = np.arange(_N_CEP)[:, None]
    m = np.cos(np.pi / _N_FILT * (n + 0.5) * k) * np.sqrt(2 / _N_FILT)
    m[0] /= np.sqrt(2)
    return m


_FB = _filterbank()
_DCT = _dct_matrix()
_WINDOW = np.hamming(_WIN)


def _delta(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    return (pad[3:-1] - pad[1:-3] + 2 * (pad[4:] - pad[:-4])) / 10.0


def lfcc(x8k: np.ndarray) -> np.ndarray:
    """(frames, 60) LFCC + deltas of an 8 kHz signal; frames below -50 dB of the loudest are dropped."""
    x = np.asarray(x8k, dtype=np.float64).reshape(-1)
    if len(x) < _WIN:
        return np.zeros((0, 3 * _N_CEP))
    n = 1 + (len(x) - _WIN) // _HOP
    idx = np.arange(_WIN)[None, :] + _HOP * np.arange(n)[:, None]
    frames = x[idx] * _WINDOW
    power = np.abs(np.fft.rfft(frames, _N_FFT)) ** 2
    energy = power.sum(axis=1)
    keep = energy > energy.max() * 1e-5 if n else np.zeros(0, bool)
    spec = np.log(power @ _FB.T + 1e-10)
    cep = spec @ _DCT.T
    feats = np.hstack([cep, _delta(cep), _delta(_delta(cep))])
    return feats[keep] if keep.sum() >= 10 else feats
