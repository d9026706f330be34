"""Prosody of one answer: how fast, how high, how loud, how hesitant.

The questionnaire reads hesitation and stress from how an applicant answers, not only from what is said:
the delay before answering, pauses inside the answer, speech rate, pitch level and movement, loudness.
:class:`ProsodyTracker` is fed the answer's audio block by block as it arrives (each block turned into
10 ms frame features at once, then the audio is dropped), so memory per answer is a few floats per frame
and the cost is spread over the call instead of landing at the answer's end.

Pitch is YIN (de Cheveigné & Kawahara 2002) in numpy: the cumulative-mean-normalised difference function
per 10 ms hop, its first dip under 0.2 in 60-400 Hz. Speech rate counts syllable nuclei as intensity
peaks standing 1 dB above their surroundings in voiced frames (de Jong & Wempe 2009).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.signal import find_peaks

__all__ = ["ProsodyFeatures", "ProsodyTracker", "analyse"]

HOP_S = 0.010
WIN_S = 0.025
F0_MIN = 60.0
F0_MAX = 400.0
YIN_THRESHOLD = 0.2
MIN_PAUSE_S = 0.2
#: Frames quieter than this are silence whatever the level of the answer (digital silence, line hiss).
SILENCE_DB = -55.0


@dataclass(frozen=True)
class ProsodyFeatures:
    duration_s: float
    speech_s: float
    pause_count: int
    pause_total_s: float
    syllables: int
    speech_rate: float
    articulation_rate: float
    pitch_mean_hz: float | None
    pitch_std_st: float | None
    pitch_range_st: float | None
    energy_mean_db: float | None
    energy_std_db: float | None
    voiced_ratio: float
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class ProsodyTracker:
    """Frame features of one answer, computed incrementally; ``finish`` summarises them."""

    def __init__(self, sample_rate: int, *, max_s: float = 120.0) -> None:
        self.sr = sample_rate
        self.hop = round(HOP_S * sample_rate)
        self.win = round(WIN_S * sample_rate)
        self.tau_min = int(sample_rate / F0_MAX)
        self.tau_max = int(np.ceil(sample_rate / F0_MIN))
        self.frame_len = self.win + self.tau_max
        self.nfft = 1 << int(np.ceil(np.log2(self.frame_len + self.win)))
        self.max_frames = int(max_s / HOP_S)
        self._pending = np.zeros(0, dtype=np.float32)
        self._energy: list[np.ndarray] = []
        self._f0: list[np.ndarray] = []
        self._frames = 0
        self._last_f0 = np.nan
        self._samples = 0
        self.truncated = False

    @property
    def duration_s(self) -> float:
        return self._samples / self.sr

    def feed(self, x: np.ndarray) -> None:
        self._samples += len(x)
        if self._frames >= self.max_frames:
            self.truncated = True
            return
        buf = np.concatenate([self._pending, np.asarray(x, dtype=np.float32)])
        n = (len(buf) - self.frame_len) // self.hop + 1 if len(buf) >= self.frame_len else 0
        if n <= 0:
            self._pending = buf
            return
        if self._frames + n > self.max_frames:
            n = self.max_frames - self._frames
            self.truncated = True
        idx = np.arange(n)[:, None] * self.hop + np.arange(self.frame_len)[None, :]
        frames = buf[idx].astype(np.float64)
        self._pending = buf[n * self.hop:]
        energy, f0 = self._features(frames)
        self._energy.append(energy)
        self._f0.append(f0)
        self._frames += n

    def _features(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energy of every 10 ms frame; pitch of every other non-silent frame (20 ms is ample for
        pitch statistics and halves the cost), carried to the frame after it."""
        head = frames[:, : self.win]
        energy = 10 * np.log10(np.mean(head**2, axis=1) + 1e-10)
        parity = (np.arange(len(frames)) + self._frames) % 2 == 0
        pick = np.flatnonzero(parity & (energy >= SILENCE_DB))
        f0 = np.full(len(frames), np.nan)
        if pick.size:
            f0[pick] = self._yin(frames[pick])
        odd = np.flatnonzero(~parity)
        prev = np.concatenate([[self._last_f0], f0])[odd]
        f0[odd] = prev
        if len(f0):
            self._last_f0 = f0[-1]
        return energy, f0

    def _yin(self, frames: np.ndarray) -> np.ndarray:
        w, tmax = self.win, self.tau_max
        head = frames[:, :w]
        fa = np.fft.rfft(head, self.nfft, axis=1)
        fb = np.fft.rfft(frames, self.nfft, axis=1)
        cross = np.fft.irfft(np.conj(fa) * fb, self.nfft, axis=1)[:, : tmax + 1]
        sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
        taus = np.arange(tmax + 1)
        e_shift = sq[:, taus + w] - sq[:, taus]
        d = sq[:, w : w + 1] + e_shift - 2 * cross
        d[:, 0] = 0.0
        cum = np.cumsum(d[:, 1:], axis=1)
        cmnd = np.ones_like(d)
        cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
        f0 = np.full(len(frames), np.nan)
        region = cmnd[:, self.tau_min : tmax]
        below = region < YIN_THRESHOLD
        has = below.any(axis=1)
        first = np.argmax(below, axis=1)
        for i in np.flatnonzero(has):
            t = first[i]
            while t + 1 < region.shape[1] and region[i, t + 1] < region[i, t]:
                t += 1
            tau = t + self.tau_min
            if 0 < tau < tmax:
                a, b, c = cmnd[i, tau - 1], cmnd[i, tau], cmnd[i, tau + 1]
                den = a - 2 * b + c
                shift = 0.5 * (a - c) / den if abs(den) > 1e-12 else 0.0
                tau_f = tau + float(np.clip(shift, -1, 1))
            else:
                tau_f = float(tau)
            f0[i] = self.sr / tau_f
        return f0

    def finish(self, *, duration_s: float | None = None) -> ProsodyFeatures:
        """Summary of the answer; ``duration_s`` overrides the fed length (the VAD's view of it)."""
        if self._pending.size and self._frames < self.max_frames:
            tail = np.concatenate([self._pending, np.zeros(self.frame_len, np.float32)])
            self._pending = np.zeros(0, dtype=np.float32)
            n_tail = max(1, round((len(tail) - self.frame_len) / self.hop))
            saved = self._samples
            self.feed(tail[: (n_tail - 1) * self.hop + self.frame_len])
            self._samples = saved
        energy = np.concatenate(self._energy) if self._energy else np.zeros(0)
        f0 = np.concatenate(self._f0) if self._f0 else np.zeros(0)
        dur = self.duration_s if duration_s is None else duration_s
        if duration_s is not None:
            keep = max(0, round(duration_s / HOP_S))
            energy, f0 = energy[:keep], f0[:keep]
        return summarise(energy, f0, dur, truncated=self.truncated)


def summarise(energy: np.ndarray, f0: np.ndarray, duration_s: float, *, truncated: bool = False
              ) -> ProsodyFeatures:
    """Answer-level features from per-frame energy (dB) and f0 (Hz, NaN when unvoiced)."""
    if energy.size < 3:
        return ProsodyFeatures(duration_s, 0.0, 0, 0.0, 0, 0.0, 0.0, None, None, None, None, None, 0.0,
                               truncated)
    p10, p90 = np.percentile(energy, [10, 90])
    threshold = max(p90 - min(25.0, 0.5 * (p90 - p10)), SILENCE_DB)
    active = energy >= threshold
    voiced = active & ~np.isnan(f0)
    pause_count, pause_frames = _pauses(active)
    speech_s = float(active.sum()) * HOP_S
    env = np.convolve(energy, np.ones(3) / 3, mode="same")
    peaks, _ = find_peaks(env, prominence=1.0, distance=max(1, int(0.05 / HOP_S)))
    peaks = [p for p in peaks if voiced[p]]
    syllables = len(peaks)
    dur = max(duration_s, 1e-6)
    pitch = f0[voiced]
    if pitch.size >= 3:
        st = 12 * np.log2(pitch / 100.0)
        lo, hi = np.percentile(st, [5, 95])
        pitch_mean: float | None = float(100.0 * 2 ** (np.mean(st) / 12))
        pitch_std: float | None = float(np.std(st))
        pitch_range: float | None = float(hi - lo)
    else:
        pitch_mean = pitch_std = pitch_range = None
    e_act = energy[active]
    return ProsodyFeatures(
        duration_s=float(dur), speech_s=speech_s, pause_count=pause_count,
        pause_total_s=pause_frames * HOP_S, syllables=syllables,
        speech_rate=syllables / dur, articulation_rate=syllables / max(speech_s, 1e-6),
        pitch_mean_hz=pitch_mean, pitch_std_st=pitch_std, pitch_range_st=pitch_range,
        energy_mean_db=float(np.mean(e_act)) if e_act.size else None,
        energy_std_db=float(np.std(e_act)) if e_act.size else None,
        voiced_ratio=float(voiced.sum() / max(1, active.sum())), truncated=truncated,
    )


def _pauses(active: np.ndarray) -> tuple[int, int]:
    """Silent runs of at least MIN_PAUSE_S strictly inside the speech (not before or after it)."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return 0, 0
    inner = ~active[idx[0] : idx[-1] + 1]
    count = frames = 0
    run = 0
    min_frames = round(MIN_PAUSE_S / HOP_S)
    for v in np.append(inner, False):
        if v:
            run += 1
            continue
        if run >= min_frames:
            count += 1
            frames += run
        run = 0
    return count, frames


def analyse(x: np.ndarray, sample_rate: int) -> ProsodyFeatures:
    """Prosody of a whole answer at once (the tracker fed in one block)."""
    t = ProsodyTracker(sample_rate)
    t.feed(x)
    return t.finish()
