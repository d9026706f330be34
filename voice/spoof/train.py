"""Training and measuring the countermeasure's back end (``callvet spoof train`` / ``spoof eval``).

The back end is two small logistic regressions over the standardised :mod:`~callvet.voice.spoof.cues`
vector, one per spoof kind (synthetic vs bona fide, replay vs bona fide), each followed by its own
Platt calibration so both outputs are log-likelihood ratios on one scale; the score is their maximum
and ``kind`` the argmax. Why per kind: a single fused regression let the kind with the most training
rows (synthetic) decide the weights and starved the replay cue (fusion weight 0.06 for an LLR that was
7.9 % EER alone); a max of calibrated per-kind LLRs gives each kind the weight it earns.

Everything that is chosen -- the regularisation strength, the calibration, the operating point -- is
chosen on *out-of-fold* scores: leave one fold of :data:`~.heldout.FOLDS` out (family, speakers and lines
held out together), so the threshold is the (1 - FFR) quantile of genuine callers the scoring model
never saw. :func:`lofo` wraps that once more to measure the whole recipe on each fold it never saw.

Training needs scikit-learn; serving reads only the ``.npz`` (numpy).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.spoof.cues import CUE_NAMES, N_CUES
from callvet.voice.spoof.heldout import FOLDS, LINES, Rows

__all__ = ["KINDS", "det_curve", "eer", "fit_backend", "lofo", "operating_rates", "score_rows"]

KINDS = ("synthetic", "replay")
C_GRID = (0.01, 0.1, 1.0)
#: The peer in the same run: the cepstral statistics alone (what an LFCC baseline sees).
LFCC_ONLY = np.asarray([n.startswith(("lfcc", "dlfcc")) for n in CUE_NAMES])


def _lines(fold: int) -> tuple[int, ...]:
    return FOLDS[fold].lines


def _train_matrix(rows: Rows, folds: Sequence[int], banned_lines: set[int],
                  cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every recording of ``folds`` on every line not in ``banned_lines`` (line copies = augmentation)."""
    keep = np.isin(np.asarray(rows.fold), list(folds))
    lines = [c for c in range(LINES) if c not in banned_lines]
    if not keep.any() or not lines:
        raise InvalidInput("no training rows left for this fold", code="too_little_data")
    x = rows.x[keep][:, lines][:, :, cols].reshape(-1, int(cols.sum()))
    kinds = np.repeat(np.asarray(rows.kind)[keep], len(lines))
    return x, kinds


def _test_matrix(rows: Rows, fold: int, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each recording of ``fold`` once, on one of the fold's own lines (by position)."""
    idx = np.flatnonzero(np.asarray(rows.fold) == fold)
    lines = _lines(fold)
    line = np.asarray([lines[i % len(lines)] for i in range(len(idx))])
    return rows.x[idx, line][:, cols], idx


def _fit_kind(x: np.ndarray, kinds: np.ndarray, kind: str, c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    m = (kinds == "bonafide") | (kinds == kind)
    y = (kinds[m] == kind).astype(int)
    if len(set(y)) < 2:
        raise InvalidInput(f"need bona fide and {kind} rows to train on", code="too_little_data")
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x[m], y)
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _fit_raw(x: np.ndarray, kinds: np.ndarray, c: float) -> dict[str, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    out = {"mean": mean, "scale": scale}
    for k in KINDS:
        w, b = _fit_kind(z, kinds, k, c)
        out[f"w_{k}"], out[f"b_{k}"] = w, np.asarray(b)
    return out


def _raw(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(n, 2) uncalibrated per-kind log-odds."""
    z = (x - model["mean"]) / model["scale"]
    return np.stack([z @ model[f"w_{k}"] + float(model[f"b_{k}"]) for k in KINDS], axis=1)


def _platt(raw: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """(2, 2) per-kind (a, b): calibrated LLR = a * raw + b, balanced classes (prior-free)."""
    from sklearn.linear_model import LogisticRegression

    cal = np.zeros((len(KINDS), 2))
    for j, k in enumerate(KINDS):
        m = (kinds == "bonafide") | (kinds == k)
        y = (kinds[m] == k).astype(int)
        lr = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000).fit(raw[m, j:j + 1], y)
        cal[j] = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
    return cal


def fused(raw: np.ndarray, cal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score = max calibrated per-kind LLR, index of the kind that gave it)."""
    llr = raw * cal[:, 0] + cal[:, 1]
    return llr.max(axis=1), llr.argmax(axis=1)


def _oof(rows: Rows, folds: Sequence[int], banned: set[int], c: float,
         cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold raw scores over ``folds`` (each scored by a model of the others) and row indices."""
    raws, idxs = [], []
    for j in folds:
        others = [f for f in folds if f != j]
        x, kinds = _train_matrix(rows, others, banned | set(_lines(j)), cols)
        model = _fit_raw(x, kinds, c)
        xt, idx = _test_matrix(rows, j, cols)
        raws.append(_raw(model, xt))
        idxs.append(idx)
    return np.concatenate(raws), np.concatenate(idxs)


def fit_backend(rows: Rows, folds: Sequence[int] | None = None, *, banned_lines: Sequence[int] = (),
                cols: np.ndarray | None = None, meta: dict[str, Any] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The back end from ``folds`` of ``rows`` (default all), never using ``banned_lines``.

    C, the calibration and the genuine score distribution all come from leave-one-fold-out scores
    within ``folds``; the final regressions are then fitted on all of them."""
    folds = list(range(len(FOLDS))) if folds is None else list(folds)
    cols = np.ones(N_CUES, bool) if cols is None else np.asarray(cols, bool)
    if len(folds) < 2:
        raise InvalidInput("need at least two folds to cross-fit", code="bad_folds")
    banned = set(banned_lines)
    kinds_all = np.asarray(rows.kind)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    per_c = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for c in C_GRID:
            raw, idx = _oof(rows, folds, banned, c, cols)
            cal = _platt(raw, kinds_all[idx])
            score, _ = fused(raw, cal)
            bona = kinds_all[idx] == "bonafide"
            e = eer(score[bona], score[~bona])
            per_c[str(c)] = round(e, 4)
            if best is None or e < best[0]:
                best = (e, c, cal, score[bona])
        assert best is not None
        e, c, cal, bona_scores = best
        x, kinds = _train_matrix(rows, folds, banned, cols)
        model = _fit_raw(x, kinds, c)
    cm = {**model, "cal": cal, "bona_scores": np.sort(bona_scores), "cols": cols,
          "feature_names": np.asarray(CUE_NAMES)}
    report = {"oof_eer": round(e, 4), "C": c, "oof_eer_per_C": per_c, "folds": folds,
              "banned_lines": sorted(banned), "train_rows": len(x), "genuine_oof": len(bona_scores)}
    cm["meta"] = np.asarray(json.dumps({**(meta or {}), "training": report}))
    return cm, report


def score_rows(cm: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, kind index) of cue vectors ``x`` (full :data:`CUE_NAMES` width) under back end ``cm``."""
    cols = np.asarray(cm["cols"], bool)
    return fused(_raw(cm, np.asarray(x, np.float64)[:, cols]), np.asarray(cm["cal"]))


def _summary(score: np.ndarray, kind_idx: np.ndarray, kinds: np.ndarray, threshold: float) -> dict[str, Any]:
    bona = kinds == "bonafide"
    flags = score > threshold
    out: dict[str, Any] = {"n_genuine": int(bona.sum()), "eer": round(eer(score[bona], score[~bona]), 4),
                           "false_flag_rate": round(float(flags[bona].mean()), 4) if bona.any() else None}
    for j, k in enumerate(KINDS):
        m = kinds == k
        if m.any():
            out[f"n_{k}"] = int(m.sum())
            out[f"eer_{k}"] = round(eer(score[bona], score[m]), 4)
            out[f"miss_{k}"] = round(float(1 - flags[m].mean()), 4)
            hit = m & flags
            out[f"kind_right_{k}"] = round(float(np.mean(kind_idx[hit] == j)), 4) if hit.any() else None
    return out


def lofo(rows: Rows, *, ffr: float = 0.01, test_rows: Rows | None = None,
         cols: np.ndarray | None = None) -> dict[str, Any]:
    """Each fold held out in turn (family, speakers, lines): the whole recipe (:func:`fit_backend` on
    the other folds, lines of the held-out fold banned) scores it at the recipe's own operating point.
    ``test_rows``: score other recordings of the held-out fold (an independent draw) instead."""
    test = rows if test_rows is None else test_rows
    kinds_t = np.asarray(test.kind)
    groups_t = np.asarray(test.group)
    scores, kidx, idxs, flags = [], [], [], []
    per_fold: dict[str, Any] = {}
    for k, fold in enumerate(FOLDS):
        others = [f for f in range(len(FOLDS)) if f != k]
        cm, rep = fit_backend(rows, others, banned_lines=fold.lines, cols=cols)
        thr = float(np.quantile(cm["bona_scores"], 1 - ffr))
        xt, idx = _test_matrix(test, k, np.ones(N_CUES, bool))
        s, ki = score_rows(cm, xt)
        per_fold[fold.family] = {**_summary(s, ki, kinds_t[idx], thr), "threshold": round(thr, 3),
                                 "C": rep["C"], "inner_oof_eer": rep["oof_eer"]}
        scores.append(s), kidx.append(ki), idxs.append(idx), flags.append(s > thr)
    s, ki, idx, fl = (np.concatenate(v) for v in (scores, kidx, idxs, flags))
    pooled = _summary(s, ki, kinds_t[idx], np.inf)
    bona = kinds_t[idx] == "bonafide"
    pooled["false_flag_rate"] = round(float(fl[bona].mean()), 4)
    for k in KINDS:
        m = kinds_t[idx] == k
        pooled[f"miss_{k}"] = round(float(1 - fl[m].mean()), 4)
    groups = {}
    for g in sorted(set(groups_t[idx])):
        m = groups_t[idx] == g
        is_bona = bool(bona[m][0])
        rate = float(fl[m].mean() if is_bona else 1 - fl[m].mean())
        groups[g] = {"n": int(m.sum()), ("false_flag_rate" if is_bona else "miss_rate"): round(rate, 4)}
    return {"pooled": pooled, "folds": per_fold, "groups": groups, "ffr_target": ffr}


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


def operating_rates(results: Sequence[Any], spoof: Sequence[bool], kinds: Sequence[str],
                    *, threshold: float, ffr: float) -> dict[str, Any]:
    """False-flag rate on genuine and miss rate per spoof kind of detector ``results`` (SpoofResult),
    plus how often a flagged spoof gets the right ``kind``."""
    flags = np.asarray([r.flag for r in results])
    y = np.asarray(spoof, bool)
    k = np.asarray(kinds)
    out: dict[str, Any] = {"threshold": round(threshold, 4), "ffr_target": ffr,
                           "false_flag_rate": round(float(flags[~y].mean()), 4) if (~y).any() else None,
                           "genuine": int((~y).sum())}
    for kind in (*KINDS, "spoof"):
        m = k == kind
        if m.any():
            out[f"miss_{kind}"] = round(float(1 - flags[m].mean()), 4)
            got = [results[i].kind for i in np.flatnonzero(m & flags)]
            out[f"kind_right_{kind}"] = (round(float(np.mean([g == kind for g in got])), 4)
                                         if got and kind != "spoof" else None)
            out[f"n_{kind}"] = int(m.sum())
    return out
