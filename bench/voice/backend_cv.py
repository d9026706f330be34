"""What each step of the channel-robust back end buys, with speaker-disjoint cross-validation.

Usage: python bench/voice/backend_cv.py CORPUS_ROOT [--folds 3] [--seed 0] [--cache DIR] [--out DIR]

CORPUS_ROOT holds clean/ and channel/ <speaker>/<file>.wav trees (voice-dev). The back end is trained
on the speakers of the other folds only (both conditions + simulated-channel copies); the held-out
fold is enrolled / tested with the corpus protocol (first 3 files enrolled, 20 % of speakers never
enrolled); trials are pooled over folds. The peer in every row is the raw GE2E cosine measured in the
same run on the same folds; ratios are against it. Writes RESULTS.md and results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.backend import (
    RECOMMENDED_CONFIG,
    BackendConfig,
    fit_backend,
    speaker_folds,
    train_backend,
)
from callvet.voice.engine import COSINE_THRESHOLD, VoiceEngine
from callvet.voice.evaluation import (
    Scorer,
    compute_metrics,
    embed_set,
    pool_trials,
    run_protocol,
    scan_tree,
    speaker_groups,
    target_nontarget,
    training_set,
)

STEPS: list[tuple[str, BackendConfig | None, bool]] = [
    ("raw cosine", None, False),
    ("+ channel-augmented enrolment", None, True),
    ("+ NAP-16/WCCN (both conditions + augmented copies)", BackendConfig(asnorm_top_n=0), True),
    ("+ AS-norm (top-100 cohort), cosine back end", BackendConfig(), True),
    ("NAP-16/WCCN + PLDA-200 instead of cosine/AS-norm (shipped)", RECOMMENDED_CONFIG, True),
]
CONDITIONS = [("channel", "channel", "channel"), ("clean->channel", "clean", "channel"),
              ("clean", "clean", "clean")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/callvet-voice-cache"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--stability-seeds", type=lambda v: [int(x) for x in v.split(",") if x],
                    default="0,1,2,3,4", help="fold seeds for the stability table of the full back end")
    args = ap.parse_args()
    t0 = time.time()
    engine = VoiceEngine.from_settings(Settings(), backend_dir=False)
    sets = {c: embed_set(engine, scan_tree(args.corpus / c), augment=True, cache_dir=args.cache,
                         progress=True, label=c) for c in ("clean", "channel")}
    speakers = sorted(set(sets["clean"].speakers))
    groups = speaker_groups(args.corpus / "clean", speakers)
    folds = speaker_folds(speakers, args.folds, seed=args.seed, strata=groups)
    rows: list[dict] = []
    for name, cfg, enrol_aug in STEPS:
        backends = []
        for held in folds:
            train = training_set(list(sets.values()), set(speakers) - set(held))
            if cfg is None:
                backends.append(None)
            elif cfg.asnorm_top_n > 0:
                backends.append(train_backend(train, cfg, folds=3))
            else:
                backends.append(fit_backend(train, cfg))
        for cond, enrol_c, test_c in CONDITIONS:
            for acc in (None, 10.0):
                if cond == "clean" and acc:
                    continue
                parts = []
                for held, b in zip(folds, backends, strict=True):
                    hs = set(held)
                    parts.append(run_protocol(sets[enrol_c].subset(hs), sets[test_c].subset(hs),
                                              Scorer(b, enrol_augment=enrol_aug), seed=args.seed,
                                              accumulate_s=acc, groups=groups))
                thr = None
                if backends[0] is not None and cfg is not None and cfg.asnorm_top_n > 0:
                    thr = float(np.mean([b.threshold for b in backends]))
                m = compute_metrics(pool_trials(parts), thr)
                if thr is not None:
                    # each fold at its own calibrated threshold
                    fa = [compute_metrics(p, b.threshold)["fa_per_trial_at_threshold"]
                          for p, b in zip(parts, backends, strict=True)]
                    m["fa_per_trial_at_own_threshold"] = float(np.mean(fa))
                    m["miss_at_own_threshold"] = float(np.mean(
                        [compute_metrics(p, b.threshold)["miss_at_threshold"]
                         for p, b in zip(parts, backends, strict=True)]))
                rows.append({"step": name, "condition": cond, "test_speech": "~10 s" if acc else "1 utt",
                             **m})
                print(f"{name:60s} {cond:15s} {'10s' if acc else '1u':4s} EER {m['eer']:.3f} "
                      f"minDCF {m['min_dcf']:.3f} top1 {m['top1']:.3f} FA95 {m['fa_at_95_detection']:.3f}",
                      flush=True)
    stability = []
    for seed in args.stability_seeds:
        sfolds = speaker_folds(speakers, args.folds, seed=seed, strata=groups)
        sbk = [fit_backend(training_set(list(sets.values()), set(speakers) - set(h)), RECOMMENDED_CONFIG)
               for h in sfolds]
        for cond, enrol_c, test_c in CONDITIONS[:2]:
            for acc in (None, 10.0):
                parts = [run_protocol(sets[enrol_c].subset(set(h)), sets[test_c].subset(set(h)),
                                      Scorer(b, enrol_augment=True), seed=seed, accumulate_s=acc,
                                      groups=groups)
                         for h, b in zip(sfolds, sbk, strict=True)]
                m = compute_metrics(pool_trials(parts))
                stability.append({"seed": seed, "condition": cond, "test_speech": "~10 s" if acc else "1 utt",
                                  **{k: m[k] for k in ("eer", "min_dcf", "top1", "fa_at_95_detection")}})
    full_rows = []
    for cond, enrol_c, test_c in CONDITIONS:
        tr = run_protocol(sets[enrol_c], sets[test_c], Scorer(None), seed=args.seed, groups=groups)
        _, non = target_nontarget(tr)
        m = compute_metrics(tr, COSINE_THRESHOLD)
        m["cosine_at_1pct_fa"] = float(np.quantile(non, 0.99))
        full_rows.append({"condition": cond, **m})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"cv": rows, "full_raw": full_rows, "stability": stability}, indent=1, default=float) + "\n")
    write_markdown(rows, full_rows, stability, args, time.time() - t0, args.out / "RESULTS.md")


def write_markdown(rows: list[dict], full_rows: list[dict], stability: list[dict], args: argparse.Namespace,
                   secs: float, path: Path) -> None:
    peer = {(r["condition"], r["test_speech"]): r for r in rows if r["step"] == "raw cosine"}
    lines = [
        "# voice back end: what each step buys (voice-dev, speaker-disjoint CV)",
        "",
        f"{args.folds}-fold speaker-disjoint cross-validation (stratified by family, seed {args.seed}); "
        "enrol first 3 files, 20 % of each fold's speakers never enrolled; trials pooled over folds. "
        "Top-1 is closed-set within a fold (~23 enrolled speakers). Peer: raw GE2E cosine, same run, same "
        f"folds; ratio = step / peer (lower is better for EER/FA). Run time {secs:.0f} s.",
        "",
        "| step | condition | test speech | EER | ratio | minDCF | top-1 | FA @95 % det. | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = peer[(r["condition"], r["test_speech"])]
        er = r["eer"] / p["eer"] if p["eer"] else float("nan")
        fr = r["fa_at_95_detection"] / p["fa_at_95_detection"] if p["fa_at_95_detection"] else float("nan")
        lines.append(
            f"| {r['step']} | {r['condition']} | {r['test_speech']} | {r['eer']:.1%} | {er:.2f} | "
            f"{r['min_dcf']:.3f} | {r['top1']:.1%} | {r['fa_at_95_detection']:.1%} | {fr:.2f} |")
    lines += ["", "Calibrated threshold (target 1 % false alarms per comparison; cosine/AS-norm and shipped "
              "PLDA back ends):", ""]
    for r in rows:
        if "fa_per_trial_at_own_threshold" in r:
            lines.append(f"- {r['step']}, {r['condition']}, {r['test_speech']}: FA per trial "
                         f"{r['fa_per_trial_at_own_threshold']:.2%}, miss {r['miss_at_own_threshold']:.1%}")
    lines += ["", "Per family (full back end, channel, 1 utterance):", "",
              "| family | EER | top-1 | FA @95 % det. | probes |", "|---|---|---|---|---|"]
    full = [r for r in rows if r["condition"] == "channel" and r["test_speech"] == "1 utt"
            and r["step"].endswith("(shipped)")][-1]
    for g, b in full["by_group"].items():
        lines.append(f"| {g} | {b['eer']:.1%} | {b['top1']:.1%} | {b['fa_at_95_detection']:.1%} | "
                     f"{b['n_probes']} |")
    lines += ["", f"Full back end over fold splits with seeds {args.stability_seeds} (mean [min-max]):", "",
              "| condition | test speech | EER | top-1 | FA @95 % det. |", "|---|---|---|---|---|"]
    for cond, _, _ in CONDITIONS[:2]:
        for ts in ("1 utt", "~10 s"):
            sel = [r for r in stability if r["condition"] == cond and r["test_speech"] == ts]
            if not sel:
                continue
            cells = []
            for k in ("eer", "top1", "fa_at_95_detection"):
                v = [r[k] for r in sel]
                cells.append(f"{np.mean(v):.1%} [{min(v):.1%}-{max(v):.1%}]")
            lines.append(f"| {cond} | {ts} | " + " | ".join(cells) + " |")
    lines += ["", "Raw GE2E cosine on all 87 speakers (no back end, so no CV needed; the corpus README's "
              "protocol with this project's Silero-VAD front end):", "",
              "| condition | EER | minDCF | top-1 | FA @95 % det. | cosine at 1 % FA/trial | FA/trial at "
              f"COSINE_THRESHOLD {COSINE_THRESHOLD} | miss there |", "|---|---|---|---|---|---|---|---|"]
    for r in full_rows:
        lines.append(f"| {r['condition']} | {r['eer']:.1%} | {r['min_dcf']:.3f} | {r['top1']:.1%} | "
                     f"{r['fa_at_95_detection']:.1%} | {r['cosine_at_1pct_fa']:.3f} | "
                     f"{r['fa_per_trial_at_threshold']:.2%} | {r['miss_at_threshold']:.1%} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
