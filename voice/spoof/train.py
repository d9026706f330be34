"""Training and measuring the countermeasure's back end (``callvet spoof train`` / ``spoof eval``).

Per recording (already through a phone line, 8 kHz) the detector sees its last 4.04 s at 16 kHz, as
serving does: AASIST's logit difference and LFCC frames. Three diagonal GMMs (bona fide, replay,
synthetic) are trained on the frames; the fusion (logistic regression over [AASIST, replay LLR,
synthetic LLR], balanced classes, so its output is a prior-free log-odds) and the replay-vs-synthetic
``kind`` regression are trained on *cross-fitted* LLRs (GMMs trained on one half of the training
groups score the other half), so they see LLRs as they will be on unseen speakers. The operating point
is the (1 - FFR) quantile of those cross-fitted genuine scores; it is never fitted on the test set.

Training needs scikit-learn (a serving dependency already); serving reads only the ``.npz``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.audio import resample
from callvet.voice.spoof.detector import NB_SAMP, SpoofDetector
from callvet.voice.spoof.features import Gmm, lfcc

__all__ = ["Features", "det_curve", "eer", "featurize", "fit_cm", "operating_rates", "save_cm"]

_MIN_16K = 8000
#: Frames each GMM is fitted on at most (a random subset): EM cost grows with frames x components.
_MAX_GMM_FRAMES = 20000


@dataclass
class Features:
    """Per-recording detector inputs of a set, with labels and groups."""

    ids: list[str] = field(default_factory=list)
    spoof: list[bool] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    aasist: list[float] = field(default_factory=list)
    aasist_clean: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: Sequence[bool]) -> Features:
        out = Features()
        for name in ("ids", "spoof", "kind", "group", "source", "aasist", "aasist_clean", "frames"):
            src = getattr(self, name)
            if len(src) == len(mask):
                setattr(out, name, [v for v, m in zip(src, mask, strict=True) if m])
        return out


def crop16k(x8k: np.ndarray) -> np.ndarray:
    """The 16 kHz stretch the detector scores: the latest :data:`NB_SAMP` samples of the call audio."""
    return resample(np.asarray(x8k, dtype=np.float32), 8000, 16000)[-NB_SAMP:]


def featurize(
    recordings: Iterable[tuple[str, bool, str, str, str, Callable[[], tuple[np.ndarray, np.ndarray | None]]]],
    aasist_score: Callable[[np.ndarray], float],
    *,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> Features:
    """``recordings`` yields (id, is_spoof, kind, group, source, make) where ``make`` returns the 8 kHz
    phone audio and optionally the clean 16 kHz original (to measure AASIST without the channel).
    Recordings under 0.5 s of audio are dropped."""
    todo = list(recordings)

    def one(rec: Any) -> tuple[Any, float, float | None, np.ndarray] | None:
        make = rec[-1]
        x8k, clean16k = make()
        x16 = crop16k(x8k)
        if len(x16) < _MIN_16K or not np.any(x16):
            return None
        a = aasist_score(x16)
        ac = aasist_score(np.asarray(clean16k, np.float32)[-NB_SAMP:]) if clean16k is not None else None
        return rec, a, ac, lfcc(resample(x16, 16000, 8000)).astype(np.float32)

    out = Features()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for k, res in enumerate(pool.map(one, todo)):
            if progress is not None and (k + 1) % 25 == 0:
                progress(f"  {k + 1}/{len(todo)} recordings ({time.monotonic() - t0:.0f} s)")
            if res is None:
                continue
            rec, a, ac, frames = res
            out.ids.append(rec[0])
            out.spoof.append(bool(rec[1]))
            out.kind.append(rec[2])
            out.group.append(rec[3])
            out.source.append(rec[4])
            out.aasist.append(float(a))
            if ac is not None:
                out.aasist_clean.append(float(ac))
            out.frames.append(frames)
    return out


def _fit_gmm(frames: list[np.ndarray], n_components: int, seed: int) -> Gmm:
    from sklearn.mixture import GaussianMixture

    x = np.concatenate(frames).astype(np.float64)
    if len(x) > _MAX_GMM_FRAMES:
        x = x[np.random.default_rng(seed).choice(len(x), _MAX_GMM_FRAMES, replace=False)]
    if len(x) < 4 * n_components:
        raise InvalidInput(f"too few frames ({len(x)}) for a {n_components}-component GMM",
                           code="too_little_data")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # EM stopping at max_iter is expected here (a fixed budget), not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(n_components, covariance_type="diag", max_iter=40, reg_covar=1e-3,
                             random_state=seed).fit(x)
    return Gmm(gm.weights_, gm.means_, gm.covariances_)


def _gmms(f: Features, n_components: int, seed: int) -> dict[str, Gmm]:
    sets = {"bona": [fr for fr, k in zip(f.frames, f.kind, strict=True) if k == "bonafide"],
            "replay": [fr for fr, k in zip(f.frames, f.kind, strict=True) if k == "replay"],
            "synth": [fr for fr, k in zip(f.frames, f.kind, strict=True) if k == "synthetic"]}
    for name, frs in sets.items():
        if not frs:
            raise InvalidInput(f"no {name} recordings to train on", code="too_little_data")
    return {name: _fit_gmm(frs, n_components, seed) for name, frs in sets.items()}


def components(f: Features, gmms: dict[str, Gmm]) -> np.ndarray:
    """(n, 3) [AASIST, replay LLR, synthetic LLR], as :meth:`SpoofDetector.components` computes them."""
    rows = []
    for a, fr in zip(f.aasist, f.frames, strict=True):
        bona = gmms["bona"].frame_loglik(fr)
        rows.append([a, float(np.mean(gmms["replay"].frame_loglik(fr) - bona)),
                     float(np.mean(gmms["synth"].frame_loglik(fr) - bona))])
    return np.asarray(rows, dtype=np.float64)


def fit_cm(f: Features, *, folds: Sequence[Sequence[str]], n_components: int = 32, seed: int = 0,
           meta: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The back end (GMMs on all of ``f``, fusion and kind on cross-fitted LLRs).

    ``folds``: two lists of *source* names; GMMs trained on one fold's recordings score the other's.
    Returns the ``cm`` arrays and a report of the cross-fitted training figures."""
    from sklearn.linear_model import LogisticRegression

    src = np.asarray(f.source)
    oof = np.zeros((len(f), 3))
    for k, fold in enumerate(folds):
        held = np.isin(src, list(fold))
        if not held.any() or held.all():
            raise InvalidInput(f"fold {k} holds out nothing or everything", code="bad_folds")
        gm = _gmms(f.subset(list(~held)), n_components, seed)
        oof[held] = components(f.subset(list(held)), gm)
    covered = np.isin(src, [s for fold in folds for s in fold])
    if not covered.all():
        raise InvalidInput("every training source must be in a fold", code="bad_folds")
    y = np.asarray(f.spoof, dtype=int)
    fusion = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000).fit(oof, y)
    spoof_idx = y == 1
    kind_y = (np.asarray(f.kind)[spoof_idx] == "replay").astype(int)
    if len(set(kind_y)) < 2:
        raise InvalidInput("need both replay and synthetic recordings", code="too_little_data")
    kind = LogisticRegression(class_weight="balanced", max_iter=1000).fit(oof[spoof_idx], kind_y)
    fused = oof @ fusion.coef_[0] + fusion.intercept_[0]
    gm_all = _gmms(f, n_components, seed)
    cm: dict[str, np.ndarray] = {}
    for name, g in gm_all.items():
        cm[f"gmm_{name}_w"] = g.weights.astype(np.float32)
        cm[f"gmm_{name}_m"] = g.means.astype(np.float32)
        cm[f"gmm_{name}_v"] = g.variances.astype(np.float32)
    cm["fusion_w"] = fusion.coef_[0].astype(np.float64)
    cm["fusion_b"] = np.asarray(fusion.intercept_[0], dtype=np.float64)
    cm["kind_w"] = kind.coef_[0].astype(np.float64)
    cm["kind_b"] = np.asarray(kind.intercept_[0], dtype=np.float64)
    cm["bona_scores"] = fused[y == 0].astype(np.float64)
    report = {
        "cross_fitted_eer": {
            "fused": round(eer(fused[y == 0], fused[y == 1]), 4),
            "aasist": round(eer(oof[y == 0, 0], oof[y == 1, 0]), 4),
            "replay_llr": round(eer(oof[y == 0, 1], oof[y == 1, 1]), 4),
            "synthetic_llr": round(eer(oof[y == 0, 2], oof[y == 1, 2]), 4),
        },
        "fusion_w": [round(float(v), 4) for v in fusion.coef_[0]],
        "fusion_b": round(float(fusion.intercept_[0]), 4),
        "gmm_components": n_components,
        "recordings": {k: int(v) for k, v in zip(*np.unique(np.asarray(f.group), return_counts=True),
                                                   strict=True)},
    }
    cm["meta"] = np.asarray(json.dumps({**(meta or {}), "training": report}))
    return cm, report


def save_cm(cm: dict[str, np.ndarray], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **cm)
    tmp.replace(path)


def eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    """Equal error rate; scores are higher for spoof."""
    bona, spoof = np.asarray(bona, np.float64), np.asarray(spoof, np.float64)
    if not len(bona) or not len(spoof):
        return float("nan")
    ffr, miss, _ = det_curve(bona, spoof)
    i = int(np.argmin(np.abs(ffr - miss)))
    return float((ffr[i] + miss[i]) / 2)


def det_curve(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-flag rate on bona fide, miss rate on spoof, thresholds) for every threshold."""
    scores = np.concatenate([bona, spoof])
    labels = np.concatenate([np.zeros(len(bona)), np.ones(len(spoof))])
    order = np.argsort(scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    # threshold just above s[i]: flagged = scores > t
    miss = np.concatenate([[0.0], np.cumsum(lab) / max(1, len(spoof))])
    ffr = np.concatenate([[1.0], 1 - np.cumsum(1 - lab) / max(1, len(bona))])
    thr = np.concatenate([[-np.inf], s])
    return ffr, miss, thr


def operating_rates(det: SpoofDetector, comps: np.ndarray, spoof: Sequence[bool],
                    kinds: Sequence[str]) -> dict[str, Any]:
    """False-flag rate on genuine and miss rate per spoof kind at the detector's threshold, plus
    how often a flagged spoof gets the right ``kind``."""
    res = [det.decide(c) for c in comps]
    flags = np.asarray([r.flag for r in res])
    y = np.asarray(spoof, bool)
    k = np.asarray(kinds)
    out: dict[str, Any] = {"threshold": round(det.threshold, 4), "ffr_target": det.ffr,
                           "false_flag_rate": round(float(flags[~y].mean()), 4) if (~y).any() else None,
                           "genuine": int((~y).sum())}
    for kind in ("synthetic", "replay"):
        m = k == kind
        if m.any():
            out[f"miss_{kind}"] = round(float(1 - flags[m].mean()), 4)
            got = [r.kind for r, f in zip([res[i] for i in np.flatnonzero(m)], flags[m], strict=True) if f]
            out[f"kind_right_{kind}"] = round(float(np.mean([g == kind for g in got])), 4) if got else None
            out[f"n_{kind}"] = int(m.sum())
    return out
