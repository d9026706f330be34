"""Open-set calibration: false alarms per call / per request, whatever the blacklist size.

A back end gives one normalised score per comparison (adaptive s-norm against an impostor cohort, so
an innocent probe's scores are roughly standardised whatever its voice family or duration). An alarm
is the *best* score over every identity on the list, and a live call looks again as speech builds up,
so a threshold set for 1 % false alarms per comparison gives about ``1 - 0.99^N`` per call. This
module turns the per-comparison null (innocent) distribution, estimated out of fold on training
speakers, into a threshold for a wanted false-alarm rate per *search*:

    P(alarm | innocent) = 1 - (1 - p(t)) ** (n_eff * looks_factor)

* ``p(t)``: the per-comparison tail of the innocent score, empirical where the calibration set has
  data and a Gaussian tail fitted to the upper 10 % beyond it (the tail at 10^-5 that a 1,000-identity
  list needs is far beyond any development set);
* ``n_eff = identities * (prints per identity) ** prints_exponent``: the best print of an identity is
  a max over correlated prints of one voice;
* ``looks_factor = 1 + looks_gamma * ln(last look / first look speech)``: looks of one call share most
  of their speech, so they add far fewer chances than their count (measured out of fold).

Scores also become calibrated log-likelihood ratios (BOSARIS-style linear logistic regression on the
score and the log net speech of the probe), so a 1.5 s probe carries less evidence than a 10 s one.

Everything is a pure function of the calibration file and the database's counts, so every replica
computes the same threshold for the same blacklist.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, ndtri

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "OperatingPoint",
    "fit_calibration",
    "fit_llr",
    "fit_tail",
]

CALIBRATION_FILE = "calibration.json"
_TAIL_Q = 0.90


@dataclass(frozen=True)
class OperatingPoint:
    """One tier's threshold for a search of the current blacklist."""

    tier: str
    target_far: float
    threshold: float
    n_effective: float
    expected_far: float
    expected_detection: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("threshold", "n_effective"):
            d[k] = round(float(d[k]), 4)
        for k in ("expected_far", "expected_detection", "target_far"):
            d[k] = round(float(d[k]), 6)
        return d


def fit_tail(null: np.ndarray, q: float = _TAIL_Q) -> dict[str, Any]:
    """Per-comparison null model: sorted upper sample plus a Gaussian tail fitted beyond quantile q.

    The tail is fitted by least squares of the sorted upper scores on their normal quantiles, so
    ``t(p) = mu + sigma * z(1 - p)`` there; it matches the empirical curve at the fit's start.
    """
    s = np.sort(np.asarray(null, dtype=np.float64))
    n = len(s)
    if n < 50:
        raise ValueError(f"a null model needs at least 50 impostor scores, got {n}")
    start = int(q * n)
    upper = s[start:]
    probs = 1.0 - (np.arange(start, n) + 0.5) / n
    z = ndtri(1.0 - probs)
    a = np.vstack([np.ones_like(z), z]).T
    (mu, sigma), *_ = np.linalg.lstsq(a, upper, rcond=None)
    sigma = max(float(sigma), 1e-6)
    keep = np.quantile(s, np.linspace(0.5, 1.0, 201))
    return {"n": n, "mu": float(mu), "sigma": sigma, "q": q,
            "t_q": float(s[start]), "grid_t": keep.tolist()}


def fit_llr(tar: np.ndarray, non: np.ndarray, tar_dur: np.ndarray, non_dur: np.ndarray,
            prior: float = 0.5) -> list[float]:
    """Weights of ``llr = w0 + w1 s + w2 s log(d) + w3 log(d)`` (d = probe net speech, s), fitted
    by prior-weighted logistic regression (BOSARIS ``train_linear_fusion`` with a quality measure)."""
    x = np.concatenate([tar, non]).astype(np.float64)
    d = np.log(np.maximum(np.concatenate([tar_dur, non_dur]).astype(np.float64), 0.5))
    y = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    feats = np.stack([np.ones_like(x), x, x * d, d], axis=1)
    w_t, w_n = prior / max(len(tar), 1), (1 - prior) / max(len(non), 1)
    wt = np.where(y == 1, w_t, w_n)
    offset = math.log(prior / (1 - prior))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ w + offset
        sgn = 2 * y - 1
        val = np.logaddexp(0.0, -sgn * z)
        g = -(sgn * expit(-sgn * z) * wt) @ feats
        return float((wt * val).sum()), g

    res = minimize(loss, np.array([0.0, 1.0, 0.0, 0.0]), jac=True, method="L-BFGS-B")
    return [float(v) for v in res.x]


@dataclass
class Calibration:
    """The open-set calibration of one back end (``calibration.json`` beside ``backend.npz``)."""

    backend_id: str
    tail: dict[str, Any]
    llr_weights: list[float]
    prints_exponent: float = 0.5
    looks_gamma: float = 0.5
    target_scores: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- the null model ----------------------------------------------------------------------------
    def p_comparison(self, t: float) -> float:
        """P(innocent score > t) for one comparison."""
        tail = self.tail
        if t >= tail["t_q"]:
            z = (t - tail["mu"]) / tail["sigma"]
            return float(0.5 * math.erfc(z / math.sqrt(2)))
        grid = np.asarray(tail["grid_t"])
        probs = 1.0 - np.linspace(0.5, 1.0, len(grid))
        return float(np.interp(t, grid, probs, left=0.5, right=float(1.0 - tail["q"])))

    def t_for_p(self, p: float) -> float:
        """Inverse of :meth:`p_comparison` (the score one comparison passes with probability p)."""
        tail = self.tail
        p = min(max(p, 1e-300), 0.5)
        if p <= 1.0 - tail["q"]:
            return float(tail["mu"] + tail["sigma"] * ndtri(1.0 - p))
        grid = np.asarray(tail["grid_t"])
        qs = np.linspace(0.5, 1.0, len(grid))
        return float(np.interp(1.0 - p, qs, grid))

    def n_effective(self, identities: int, prints: int, *, looks_ratio: float = 1.0) -> float:
        """Independent comparisons an innocent search amounts to (``looks_ratio`` = last / first look
        net speech of a call; 1 for a single identify request)."""
        if identities <= 0:
            return 0.0
        per = max(prints / identities, 1.0)
        looks = 1.0 + self.looks_gamma * math.log(max(looks_ratio, 1.0))
        return identities * per ** self.prints_exponent * looks

    def threshold(self, far: float, n_eff: float) -> float:
        if not 0 < far < 1:
            raise ValueError(f"false-alarm target must be in (0, 1), got {far}")
        if n_eff <= 0:
            return self.t_for_p(far)
        p = -math.expm1(math.log1p(-far) / n_eff)
        return self.t_for_p(p)

    def far(self, t: float, n_eff: float) -> float:
        p = self.p_comparison(t)
        return float(-math.expm1(n_eff * math.log1p(-min(p, 1 - 1e-15)))) if n_eff > 0 else 0.0

    def detection(self, t: float) -> float:
        """Share of development targets (~10 s probes against their own enrolment) at or above t."""
        if not self.target_scores:
            return float("nan")
        ts = np.asarray(self.target_scores)
        return float((ts >= t).mean())

    def operating_point(self, tier: str, far: float, identities: int, prints: int,
                        looks_ratio: float = 1.0) -> OperatingPoint:
        n_eff = self.n_effective(identities, prints, looks_ratio=looks_ratio)
        t = self.threshold(far, n_eff)
        return OperatingPoint(tier, far, t, n_eff, self.far(t, n_eff) if n_eff else 0.0, self.detection(t))

    # -- log-likelihood ratios --------------------------------------------------------------------
    def llr(self, score: np.ndarray | float, net_speech_s: float) -> np.ndarray:
        w = self.llr_weights
        d = math.log(max(float(net_speech_s), 0.5))
        s = np.asarray(score, dtype=np.float64)
        return w[0] + w[1] * s + w[2] * s * d + w[3] * d

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path) -> Calibration | None:
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return cls(**d)


def fit_calibration(backend_id: str, null: np.ndarray, tar: np.ndarray, null_dur: np.ndarray,
                    tar_dur: np.ndarray, *, target_scores_10s: np.ndarray, looks_gamma: float,
                    prints_exponent: float = 0.5, meta: dict[str, Any] | None = None) -> Calibration:
    """A :class:`Calibration` from out-of-fold impostor (``null``) and target scores."""
    return Calibration(
        backend_id=backend_id, tail=fit_tail(null), llr_weights=fit_llr(tar, null, tar_dur, null_dur),
        prints_exponent=prints_exponent, looks_gamma=looks_gamma,
        target_scores=[round(float(v), 4) for v in np.sort(np.asarray(target_scores_10s))],
        meta=dict(meta or {}),
    )
