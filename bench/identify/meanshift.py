"""Exploration (issue 18): does an unsupervised domain mean shift help the back end on a held-out family?

Usage: python bench/identify/meanshift.py CORPUS_ROOT --cache DIR [--fold 0]

Held-out family split in three as in indomain.py; every held-out embedding (enrolment, probes) is moved
by ``alpha * (mean of the training embeddings - mean of the recent callers' embeddings)``, the recent
callers unlabelled. Reported: fraudsters named at an *oracle* threshold set on the innocent calls
themselves (FAR/call 1 / 2 / 5 %, looks with >= 6 s), i.e. the separation, not an operating point.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openset import FOLDS


def _best(sc: Any) -> tuple[np.ndarray, np.ndarray]:
    """Innocent calls' best long-look score; fraudster calls' best long-look own score when on top."""
    inn, fr = [], []
    for lk, ls, t in zip(sc.looks, sc.look_s, sc.truth, strict=True):
        looks = lk[ls >= 6.0]
        if t < 0:
            inn.append(looks.max() if len(looks) else -np.inf)
            continue
        own = [looks[i, t] for i in range(len(looks)) if looks[i].argmax() == t]
        fr.append(max(own) if own else -np.inf)
    return np.asarray(inn), np.asarray(fr)


def main() -> None:
    from callvet.core.settings import Settings
    from callvet.voice.backend import RECOMMENDED_CONFIG
    from callvet.voice.calibration import SNorm
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.fusion import backend_fitter
    from callvet.voice.openset import Scorer, fit_openset, load_devset, score_heldout

    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    ap.add_argument("--fold", type=int, default=0)
    args = ap.parse_args()
    engine = VoiceEngine.from_settings(Settings(), backend_dir=False)
    dev = load_devset(engine, args.corpus, cache_dir=args.cache, conditions=["channel"])
    fold = FOLDS[args.fold]
    held = np.isin(dev.family, fold)
    cal, backend, _ = fit_openset(dev, ~held, fit=backend_fitter(engine.encoder, RECOMMENDED_CONFIG))
    scorer = Scorer(backend, None)
    scorer.snorm = SNorm(cal.cohort, cal.meta["_cohort_stats"], backend.calibrate, cal.cohort_top_n)
    order = list(np.random.default_rng(7).permutation(sorted(set(dev.speaker[held]))))
    thirds = [order[0::3], order[1::3], order[2::3]]
    mu_train = dev.emb[~held].mean(axis=0)
    for alpha in (0.0, 0.5, 1.0):
        inn, fr = [], []
        for f, i, r in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
            shifted = copy.copy(dev)
            delta = alpha * (mu_train - dev.emb[np.isin(dev.speaker, thirds[r])].mean(axis=0))
            shifted.emb = dev.emb + held[:, None] * delta
            shifted.aug = dev.aug + held[:, None, None] * delta
            shifted.partials = [p + delta if held[k] else p for k, p in enumerate(dev.partials)]
            sc = score_heldout(scorer, shifted, list(thirds[f][:10]),
                               list(thirds[i]) + list(thirds[f][10:]), overlap=True)
            a, b = _best(sc)
            inn.append(a)
            fr.append(b)
        ia, fa = np.concatenate(inn), np.concatenate(fr)
        cells = [f"FAR {far:.0%}: named {np.mean(fa > np.quantile(ia, 1 - far)):.3f}"
                 for far in (0.01, 0.02, 0.05)]
        print(f"{'+'.join(fold)} alpha {alpha}: {len(ia)} innocent, {len(fa)} fraudster calls; "
              + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
