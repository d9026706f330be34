"""Calibrate the voice-reuse threshold (call print against stored call prints) with families held out.

Usage: python bench/search/reuse_calibration.py CORPUS_ROOT [--cache DIR] [--write models/artifacts/...]

Voice reuse compares one call's print with every stored call of other applicants: a maximum over N
comparisons, like the blacklist. Its per-comparison null is that of *call against call* (both ~10 s,
one print each, the engine's back-end score without s-norm, as :meth:`CallPrintStore.search` scores),
estimated out of fold: for each group of voice families, a back end fitted without them scores their
speakers' simulated calls against each other. The threshold then solves ``1 - (1 - p(t))^n_eff = far``
with the looks of a call counted as for the blacklist (``looks_gamma`` from the shipped calibration).

The same run checks the result on held-out families: for each outer fold, the tail fitted on the
*other* folds' out-of-fold scores sets the threshold for N = 10, 1,000 and 10^6 stored calls, and the
fold's own call pairs give the measured false matches per call (at N = 10, from the fold's own calls)
and the share of same-voice call pairs found (detection). Raw cosine of the encoder embeddings with
the same procedure is the peer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.backend import RECOMMENDED_CONFIG, fit_backend
from callvet.voice.calibration import Calibration, SNorm, _group_tails, find_calibration, fit_tail
from callvet.voice.engine import VoiceEngine
from callvet.voice.openset import _calls, _cohort_raw, call_looks, family_folds, load_devset

SIZES = (10, 1000, 1_000_000)
FAR = 0.01
LOOKS_RATIO = 60.0 / 1.5


def fold_scores(dev, held: list[str], cosine: bool, snorm: bool = False) -> dict[str, np.ndarray]:
    """Call-vs-call scores of the held families' speakers, back end (and s-norm cohort) fitted without
    them."""
    chan = dev.cond == "channel"
    test = chan & np.isin(dev.family, held)
    train = ~np.isin(dev.family, held)
    backend = None if cosine else fit_backend(dev.training(train), RECOMMENDED_CONFIG)
    prints, spk, fam = [], [], []
    for s in sorted(set(dev.speaker[test])):
        rows = list(np.flatnonzero(test & (dev.speaker == s)))
        for call in _calls(rows, dev.net_s):
            v, _ = call_looks([dev.partials[r] for r in call], [float(dev.net_s[r]) for r in call])[-1]
            prints.append(v)
            spk.append(s)
            fam.append(str(dev.family[rows[0]]))
    x = np.stack(prints)
    if cosine:
        s_all = x @ x.T
    else:
        p = backend.project(x)
        st = np.asarray(backend.cohort_stats(p))
        s_all = np.stack([backend.calibrate(p[i] @ p.T, st[i], st) for i in range(len(p))])
        if snorm:
            cv = backend.project(_cohort_raw(dev, train & chan))
            norm = SNorm(cv, backend.cohort_stats(cv), backend.calibrate)
            m = norm.moments(p, st)
            s_all = np.stack([SNorm.apply(s_all[i], m[i:i + 1], m) for i in range(len(p))])
    spk_a, fam_a = np.asarray(spk), np.asarray(fam)
    iu = np.triu_indices(len(x), 1)
    same = spk_a[iu[0]] == spk_a[iu[1]]
    return {"scores": s_all, "spk": spk_a, "fam": fam_a, "null": s_all[iu][~same],
            "null_fam": fam_a[iu[0]][~same], "tar": s_all[iu][same]}


def make_cal(backend_id: str, null: np.ndarray, fams: np.ndarray, tar: np.ndarray,
             gamma: float) -> Calibration:
    return Calibration(backend_id=backend_id, tail=fit_tail(null), llr_weights=[0.0, 1.0, 0.0, 0.0],
                       prints_exponent=0.0, looks_gamma=gamma, group_tails=_group_tails(null, fams, 200),
                       target_scores=[round(float(v), 4) for v in np.sort(tar)],
                       meta={"null_trials": len(null), "target_pairs": len(tar),
                             "kind": "call-vs-call, out of fold (families held out)"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    ap.add_argument("--write", type=Path, default=None, help="write reuse_calibration.json here")
    ap.add_argument("--out", type=Path, default=Path("bench/search/REUSE.md"))
    ap.add_argument("--only-snorm", action="store_true", help="measure the s-norm scorer only")
    args = ap.parse_args()
    t0 = time.time()
    settings = Settings()
    engine = VoiceEngine.from_settings(settings)
    shipped = find_calibration(Path(settings.models_dir) / "backend" / engine.encoder_name, engine.backend_id)
    gamma = shipped.looks_gamma if shipped is not None else 0.5
    dev = load_devset(VoiceEngine.from_settings(settings, backend_dir=False), args.corpus,
                      cache_dir=args.cache, conditions=["channel"])
    spk_fam = dict(zip(dev.speaker, dev.family, strict=True))
    folds = family_folds([spk_fam[s] for s in sorted(spk_fam)], 4)
    lines = ["# Voice reuse: call-vs-call calibration, families held out (bench/search/reuse_calibration.py)",
             "", f"Target {FAR:.0%} false matches per call; looks up to 60 s counted (gamma {gamma:.3f}). "
             "Measured per held-out fold with the tail fitted on the other folds only. False matches per "
             "call at N = 10: share of a held-out call's 10 stored calls of other speakers (drawn from the "
             "fold) whose best passes the threshold.", "",
             "| scorer | held-out fold | calls | threshold N=10 | false matches/call N=10 | same-voice pairs "
             "found at N=10 / 1,000 / 10^6 threshold |", "|---|---|---:|---:|---|---|"]
    notes: list[str] = []
    variants = [("back end + s-norm", False, True), ("back end (PLDA)", False, False),
                ("raw cosine (peer)", True, False)]
    if args.only_snorm:
        variants = variants[:1]
    for name, cosine, snorm in variants:
        per = [fold_scores(dev, f, cosine, snorm) for f in folds]
        for i, f in enumerate(folds):
            rest = [per[j] for j in range(len(folds)) if j != i]
            cal = make_cal("x", np.concatenate([r["null"] for r in rest]),
                           np.concatenate([r["null_fam"] for r in rest]),
                           np.concatenate([r["tar"] for r in rest]), gamma)
            ts = [cal.threshold(FAR, n * (1 + gamma * np.log(LOOKS_RATIO))) for n in SIZES]
            sc, spk = per[i]["scores"], per[i]["spk"]
            rng = np.random.default_rng(i)
            hits = []
            for c in range(len(spk)):
                others = np.flatnonzero(spk != spk[c])
                pick = rng.choice(others, min(10, len(others)), replace=False)
                hits.append(float(sc[c, pick].max()) >= ts[0])
            k = int(np.sum(hits))
            det = " / ".join(f"{(per[i]['tar'] >= t).mean():.2f}" for t in ts)
            lines.append(f"| {name} | {'+'.join(f)} | {len(spk)} | {ts[0]:.2f} | {k / len(hits):.3f} "
                         f"({k}/{len(hits)}) | {det} ({len(per[i]['tar'])} pairs) |")
        if snorm and args.write is not None:
            cal = make_cal(engine.backend_id, np.concatenate([r["null"] for r in per]),
                           np.concatenate([r["null_fam"] for r in per]),
                           np.concatenate([r["tar"] for r in per]), gamma)
            cal.meta["built_from"] = str(args.corpus)
            d = {k: v for k, v in cal.__dict__.items() if k != "cohort"}
            args.write.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
            notes.append(f"Written: {args.write} (all folds pooled).")
    lines += ["", *notes, f"Run time {time.time() - t0:.0f} s on 2 shared cores."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
