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

import hashlib
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
    "COHORT_FILE",
    "Calibration",
    "OperatingPoint",
    "SNorm",
    "find_calibration",
    "fit_calibration",
    "fit_llr",
    "fit_tail",
]

CALIBRATION_FILE = "calibration.json"
COHORT_FILE = "cohort.npz"
_TAIL_Q = 0.90
#: Adaptive s-norm uses the top this many cohort scores of each side (Matejka et al. 2017: top-N
#: of a few hundred to a few thousand cohort prints).
DEFAULT_TOP_N = 200


class SNorm:
    """Adaptive symmetric score normalisation against an impostor cohort of prints.

    ``score_fn(raw, probe_stats, model_stats)`` is the back end's own comparison (PLDA LLR or AS-normed
    cosine); each side is compared with every cohort print, and the mean / std of its ``top_n`` best
    cohort scores standardise the comparison from that side:
    ``0.5 * ((s - mu_model) / sd_model + (s - mu_probe) / sd_probe)``. A probe from a voice family the
    back end never saw scores high against everyone (or low), and this takes that drift out.
    """

    def __init__(self, vectors: np.ndarray, stats: np.ndarray, score_fn: Any, top_n: int = DEFAULT_TOP_N):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.stats = np.asarray(stats, dtype=np.float64).reshape(-1, 2)
        self.score_fn = score_fn
        self.top_n = max(1, min(int(top_n), len(self.vectors)))

    def __len__(self) -> int:
        return len(self.vectors)

    def moments(self, vectors: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """(n, 2): mean and std of each print's top-N cohort scores."""
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        st = np.asarray(stats, dtype=np.float64).reshape(-1, 2)
        raw = v @ self.vectors.T
        out = np.empty((len(v), 2))
        c = raw.shape[1]
        for i in range(len(v)):
            s = np.asarray(self.score_fn(raw[i], st[i], self.stats), dtype=np.float64)
            top = np.partition(s, c - self.top_n)[-self.top_n:]
            out[i] = (top.mean(), max(float(top.std()), 1e-6))
        return out

    @staticmethod
    def apply(scores: np.ndarray, probe_m: np.ndarray, model_m: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        pm = np.asarray(probe_m, dtype=np.float64).reshape(-1, 2)
        mm = np.asarray(model_m, dtype=np.float64).reshape(-1, 2)
        return 0.5 * ((s - mm[:, 0]) / mm[:, 1] + (s - pm[:, 0]) / pm[:, 1])


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


def _p_tail(tail: dict[str, Any], t: float) -> float:
    """P(score > t) under one fitted null (:func:`fit_tail`)."""
    if t >= tail["t_q"]:
        z = (t - tail["mu"]) / tail["sigma"]
        return float(0.5 * math.erfc(z / math.sqrt(2)))
    grid = np.asarray(tail["grid_t"])
    probs = 1.0 - np.linspace(0.5, 1.0, len(grid))
    return float(np.interp(t, grid, probs, left=0.5, right=float(1.0 - tail["q"])))


def _t_tail(tail: dict[str, Any], p: float) -> float:
    """Inverse of :func:`_p_tail`."""
    p = min(max(p, 1e-300), 0.5)
    if p <= 1.0 - tail["q"]:
        return float(tail["mu"] + tail["sigma"] * ndtri(1.0 - p))
    grid = np.asarray(tail["grid_t"])
    return float(np.interp(1.0 - p, np.linspace(0.5, 1.0, len(grid)), grid))


def _group_tails(null: np.ndarray, groups: np.ndarray | None, min_n: int = 500) -> dict[str, dict[str, Any]]:
    if groups is None or not len(null):
        return {}
    g = np.asarray(groups)
    return {str(k): fit_tail(null[g == k]) for k in sorted(set(g.tolist())) if (g == k).sum() >= min_n}


def _llr_features(s: np.ndarray, probe_dur: np.ndarray, model_dur: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    dp = np.log(np.maximum(np.broadcast_to(np.asarray(probe_dur, dtype=np.float64), s.shape), 0.5))
    dm = np.log(np.maximum(np.broadcast_to(np.asarray(model_dur, dtype=np.float64), s.shape), 0.5))
    return np.stack([np.ones_like(s), s, s * dp, dp, s * dm, dm], axis=-1)


def fit_llr(tar: np.ndarray, non: np.ndarray, tar_dur: np.ndarray, non_dur: np.ndarray,
            prior: float = 0.5, *, tar_model_dur: np.ndarray | None = None,
            non_model_dur: np.ndarray | None = None) -> list[float]:
    """Weights of ``llr = w0 + w1 s + w2 s log(dp) + w3 log(dp) + w4 s log(dm) + w5 log(dm)``
    (dp / dm = net speech of probe / enrolled print), fitted by prior-weighted logistic regression
    (BOSARIS ``train_linear_fusion`` with quality measures of both sides)."""
    x = np.concatenate([tar, non]).astype(np.float64)
    dp = np.concatenate([tar_dur, non_dur]).astype(np.float64)
    tmd = np.full(len(tar), 10.0) if tar_model_dur is None else np.asarray(tar_model_dur)
    nmd = np.full(len(non), 10.0) if non_model_dur is None else np.asarray(non_model_dur)
    dm = np.concatenate([tmd, nmd]).astype(np.float64)
    y = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    feats = _llr_features(x, dp, dm)
    w_t, w_n = prior / max(len(tar), 1), (1 - prior) / max(len(non), 1)
    wt = np.where(y == 1, w_t, w_n)
    offset = math.log(prior / (1 - prior))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ w + offset
        sgn = 2 * y - 1
        val = np.logaddexp(0.0, -sgn * z)
        g = -(sgn * expit(-sgn * z) * wt) @ feats
        return float((wt * val).sum()), g

    res = minimize(loss, np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0]), jac=True, method="L-BFGS-B")
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
    #: Shortest probe net speech the null and the LLR were fitted on (shorter is refused).
    min_net_speech_s: float = 1.5
    cohort_top_n: int = DEFAULT_TOP_N
    cohort_sha256: str = ""
    #: Null tail of probes with at least ``long_min_s`` net speech (the alarm tier's looks); a 1.5 s
    #: look's impostor scores spread far wider than a 10 s one's, and pooling them made every
    #: threshold pay for the shortest look. Empty: the pooled ``tail`` is used for every tier.
    tail_long: dict[str, Any] = field(default_factory=dict)
    long_min_s: float = 6.0
    #: Development target scores (own identity, best look) of looks with >= ``long_min_s``.
    target_scores_long: list[float] = field(default_factory=list)
    #: Per voice family (of the innocent caller) null tails, pooled and long; the threshold is the
    #: highest any family needs (minimax). Held out, one family's callers against its own enrolled
    #: family-mates (espeak-ng variants) have a far heavier tail than the pooled null, and a pooled
    #: threshold let 25 % of their calls alarm at a 1 % target.
    group_tails: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_tails_long: dict[str, dict[str, Any]] = field(default_factory=dict)
    cohort: np.ndarray | None = field(default=None, repr=False, compare=False)

    # -- the null model ----------------------------------------------------------------------------
    def _tails(self, long: bool) -> list[dict[str, Any]]:
        groups = self.group_tails_long if long and self.tail_long else self.group_tails
        return [self.tail_long if long and self.tail_long else self.tail, *groups.values()]

    def p_comparison(self, t: float, *, long: bool = False) -> float:
        """P(innocent score > t) for one comparison (``long``: of a probe with >= ``long_min_s``): the
        highest over the pooled null and every family's own."""
        return max(_p_tail(tail, t) for tail in self._tails(long))

    def t_for_p(self, p: float, *, long: bool = False) -> float:
        """Inverse of :meth:`p_comparison` (the score one comparison passes with probability p)."""
        return max(_t_tail(tail, p) for tail in self._tails(long))

    def n_effective(self, identities: int, prints: int, *, looks_ratio: float = 1.0) -> float:
        """Independent comparisons an innocent search amounts to (``looks_ratio`` = last / first look
        net speech of a call; 1 for a single identify request)."""
        if identities <= 0:
            return 0.0
        per = max(prints / identities, 1.0)
        looks = 1.0 + self.looks_gamma * math.log(max(looks_ratio, 1.0))
        return identities * per ** self.prints_exponent * looks

    def threshold(self, far: float, n_eff: float, *, long: bool = False) -> float:
        """The score whose max over ``n_eff`` independent innocent comparisons passes with ``far``:
        per comparison ``p = 1 - (1 - far)^(1 / n_eff)`` (extreme value of the null)."""
        if not 0 < far < 1:
            raise ValueError(f"false-alarm target must be in (0, 1), got {far}")
        if n_eff <= 0:
            return self.t_for_p(far, long=long)
        p = -math.expm1(math.log1p(-far) / n_eff)
        return self.t_for_p(p, long=long)

    def far(self, t: float, n_eff: float, *, long: bool = False) -> float:
        p = self.p_comparison(t, long=long)
        return float(-math.expm1(n_eff * math.log1p(-min(p, 1 - 1e-15)))) if n_eff > 0 else 0.0

    def detection(self, t: float, *, long: bool = False) -> float:
        """Share of development targets (~10 s calls against their own enrolment) at or above t."""
        scores = self.target_scores_long if long and self.target_scores_long else self.target_scores
        if not scores:
            return float("nan")
        return float((np.asarray(scores) >= t).mean())

    def operating_point(self, tier: str, far: float, identities: int, prints: int,
                        looks_ratio: float = 1.0, *, long: bool = False) -> OperatingPoint:
        """``long``: the tier only acts on probes with >= ``long_min_s`` of net speech (the alarm)."""
        long = bool(long and self.tail_long)
        n_eff = self.n_effective(identities, prints, looks_ratio=looks_ratio)
        t = self.threshold(far, n_eff, long=long)
        return OperatingPoint(tier, far, t, n_eff, self.far(t, n_eff, long=long) if n_eff else 0.0,
                              self.detection(t, long=long))

    # -- log-likelihood ratios --------------------------------------------------------------------
    def llr(self, score: np.ndarray | float, net_speech_s: float,
            model_net_speech_s: np.ndarray | float = 10.0) -> np.ndarray:
        """Calibrated log-likelihood ratio (natural log) of normalised scores; shorter speech on either
        side pulls it toward 0 (less evidence either way)."""
        w = np.asarray(self.llr_weights, dtype=np.float64)
        if len(w) == 4:
            w = np.concatenate([w, [0.0, 0.0]])
        s = np.asarray(score, dtype=np.float64)
        return _llr_features(s, np.full(s.shape, float(net_speech_s)),
                             np.broadcast_to(np.asarray(model_net_speech_s, dtype=np.float64), s.shape)) @ w

    def snorm(self, score_fn: Any) -> SNorm:
        if self.cohort is None or not len(self.cohort):
            raise ValueError("this calibration has no cohort")
        stats = np.asarray(self.meta.get("_cohort_stats")) if "_cohort_stats" in self.meta else None
        if stats is None:
            raise ValueError("cohort statistics missing")
        return SNorm(self.cohort, stats, score_fn, self.cohort_top_n)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path, cohort_stats: np.ndarray | None = None) -> Path:
        """``calibration.json`` (+ ``cohort.npz``: cohort prints and their stats, float16/float64)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.cohort is not None:
            stats = cohort_stats if cohort_stats is not None else np.asarray(self.meta.get("_cohort_stats"))
            tmp_c = directory / (COHORT_FILE + ".tmp.npz")
            np.savez_compressed(tmp_c, vectors=self.cohort.astype(np.float16),
                                stats=np.asarray(stats, dtype=np.float64))
            tmp_c.replace(directory / COHORT_FILE)
            self.cohort_sha256 = hashlib.sha256((directory / COHORT_FILE).read_bytes()).hexdigest()
        d = {k: v for k, v in asdict(self).items() if k != "cohort"}
        d["meta"] = {k: v for k, v in d["meta"].items() if not k.startswith("_")}
        path = directory / CALIBRATION_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path) -> Calibration | None:
        """The calibration in ``directory``, or None; a cohort file that does not match its sha256 is
        refused (``ValueError``) rather than silently shifting every score."""
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__) - {"cohort"}
        cal = cls(**{k: v for k, v in d.items() if k in known})
        cpath = Path(directory) / COHORT_FILE
        if cal.cohort_sha256:
            blob = cpath.read_bytes() if cpath.is_file() else b""
            if hashlib.sha256(blob).hexdigest() != cal.cohort_sha256:
                raise ValueError(f"{cpath} is missing or does not match calibration.json")
            with np.load(cpath) as z:
                cal.cohort = z["vectors"].astype(np.float32)
                cal.meta["_cohort_stats"] = z["stats"].astype(np.float64)
        return cal


def find_calibration(directory: Path, backend_id: str) -> Calibration | None:
    """The calibration stored beside a back end, if it was fitted for exactly that back end."""
    import logging

    try:
        cal = Calibration.load(directory)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger(__name__).warning("calibration at %s unusable: %s", directory, exc)
        return None
    if cal is None:
        return None
    if cal.backend_id != backend_id:
        logging.getLogger(__name__).warning("calibration at %s is for %s, not %s; not used", directory,
                                            cal.backend_id, backend_id)
        return None
    return cal


def fit_calibration(backend_id: str, null: np.ndarray, tar: np.ndarray, null_dur: np.ndarray,
                    tar_dur: np.ndarray, *, target_scores_10s: np.ndarray, looks_gamma: float,
                    prints_exponent: float = 0.5, meta: dict[str, Any] | None = None,
                    tar_model_dur: np.ndarray | None = None, null_model_dur: np.ndarray | None = None,
                    min_net_speech_s: float = 1.5, long_min_s: float = 6.0,
                    target_scores_long: np.ndarray | None = None,
                    null_groups: np.ndarray | None = None) -> Calibration:
    """A :class:`Calibration` from out-of-fold impostor (``null``) and target scores; the long tail
    from the null scores of probes with >= ``long_min_s`` of net speech (when there are enough)."""
    null = np.asarray(null, dtype=np.float64)
    is_long = np.asarray(null_dur, dtype=np.float64) >= long_min_s
    long_null = null[is_long]
    groups = None if null_groups is None else np.asarray(null_groups)
    return Calibration(
        backend_id=backend_id, tail=fit_tail(null),
        tail_long=fit_tail(long_null) if len(long_null) >= 1000 else {}, long_min_s=float(long_min_s),
        group_tails=_group_tails(null, groups),
        group_tails_long=_group_tails(long_null, None if groups is None else groups[is_long]),
        target_scores_long=[] if target_scores_long is None else
        [round(float(v), 4) for v in np.sort(np.asarray(target_scores_long))],
        llr_weights=fit_llr(tar, null, tar_dur, null_dur, tar_model_dur=tar_model_dur,
                            non_model_dur=null_model_dur),
        prints_exponent=prints_exponent, looks_gamma=looks_gamma,
        target_scores=[round(float(v), 4) for v in np.sort(np.asarray(target_scores_10s))],
        meta=dict(meta or {}), min_net_speech_s=float(min_net_speech_s),
    )
