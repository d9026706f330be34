"""Which fused voiceprint to serve: GE2E + SE-Res2Net50, every back end fitted leave-one-family-out.

Usage: python bench/voice/fusion_cv.py CORPUS_ROOT [--models DIR] [--cache DIR] [--out DIR]

The same protocol as encoder_compare.py (enrol first 3 files, 20 % of each held family's speakers never
enrolled, families pooled block-diagonally, FA@95 at the pooled 95 %-detection threshold), on the same
cached embeddings of both encoders. Scorers, each back end trained on the other families only:

- raw cosine of GE2E (the peer) and of the fused embedding (= mean of the two cosines);
- the shipped recipe (NAP-16/WCCN + PLDA-200) on GE2E alone, on SE-Res2Net50 alone;
- feature fusion: the same recipe on the concatenated embedding (one back end, 768-d in);
- score fusion: one back end per encoder, LLRs summed with equal weights
  (:class:`callvet.voice.fusion.FusedBackend`, what would ship as one print space).

Nothing is tuned on the held family; the equal weights are fixed in advance, not fitted here.
Writes FUSION.md and fusion.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from callvet.core.settings import Settings
from callvet.voice.backend import RECOMMENDED_CONFIG, TrainingSet, fit_backend
from callvet.voice.encoder import load_encoder
from callvet.voice.engine import VoiceEngine
from callvet.voice.evaluation import (
    EmbeddedSet,
    Scorer,
    compute_metrics,
    embed_set,
    pool_trials,
    run_protocol,
    scan_tree,
    speaker_groups,
    training_set,
)
from callvet.voice.fusion import fit_fused_backend, fuse_embeddings, fuse_partials

sys.path.insert(0, str(Path(__file__).parent))
from encoder_compare import CONDITIONS

SCORERS = ("GE2E raw cosine", "fused raw cosine", "GE2E back end", "Res2Net back end", "feature fusion",
           "score fusion")


def fused_set(a: EmbeddedSet, b: EmbeddedSet) -> EmbeddedSet:
    if [(u.speaker, u.name) for u in a.items] != [(u.speaker, u.name) for u in b.items]:
        raise RuntimeError("the two encoders' embedded sets differ")
    return EmbeddedSet(a.items, fuse_embeddings([a.emb, b.emb]), fuse_embeddings([a.aug, b.aug]),
                       [fuse_partials([p, q]) for p, q in zip(a.partials, b.partials, strict=True)], a.net_s)


def _train(sets: dict[str, EmbeddedSet], spk: set[str]) -> TrainingSet:
    return training_set(list(sets.values()), spk)


def evaluate(sets: dict[str, dict[str, EmbeddedSet]], groups: dict[str, str],
             seed: int) -> list[dict[str, Any]]:
    speakers = set(sets["ge2e"]["clean"].speakers)
    families = sorted(set(groups.values()))
    fitted: dict[str, dict[str, Any]] = {s: {} for s in SCORERS}
    dims = [sets["ge2e"]["clean"].emb.shape[1], sets["res2net"]["clean"].emb.shape[1]]
    for fam in families:
        spk = {s for s in speakers if groups[s] != fam}
        print(f"  fitting without {fam}", flush=True)
        fitted["GE2E back end"][fam] = fit_backend(_train(sets["ge2e"], spk), RECOMMENDED_CONFIG)
        fitted["Res2Net back end"][fam] = fit_backend(_train(sets["res2net"], spk), RECOMMENDED_CONFIG)
        fitted["feature fusion"][fam] = fit_backend(_train(sets["fused"], spk), RECOMMENDED_CONFIG)
        fitted["score fusion"][fam] = fit_fused_backend(_train(sets["fused"], spk), dims, RECOMMENDED_CONFIG,
                                                        [0.5, 0.5])
    which = {"GE2E raw cosine": "ge2e", "fused raw cosine": "fused", "GE2E back end": "ge2e",
             "Res2Net back end": "res2net", "feature fusion": "fused", "score fusion": "fused"}
    rows = []
    for label, enrol_c, test_c, acc in CONDITIONS:
        for name in SCORERS:
            parts = []
            for fam in families:
                held = {s for s in speakers if groups[s] == fam}
                es = sets[which[name]]
                scorer = Scorer(None) if "raw" in name else Scorer(fitted[name][fam], enrol_augment=True)
                parts.append(run_protocol(es[enrol_c].subset(held), es[test_c].subset(held), scorer,
                                          seed=seed, accumulate_s=acc, groups=groups))
            m = compute_metrics(pool_trials(parts))
            rows.append({"condition": label, "scoring": name, **m})
            print(f"{label:22s} {name:18s} EER {m['eer']:.3f} FA95 {m['fa_at_95_detection']:.3f} "
                  f"top1 {m['top1']:.3f}", flush=True)
    return rows


def _pct(v: float) -> str:
    return "-" if v != v else f"{v:.1%}"


def write_markdown(res: dict[str, Any], path: Path) -> None:
    la = res["load_avg"]
    lines = ["# Fused voiceprint: GE2E + SE-Res2Net50, leave-one-family-out (bench/voice/fusion_cv.py)", "",
             "voice-dev, 87 speakers, 9 families; every back end fitted without the held family; protocol "
             "of encoder_compare.py (enrol 3 files, 20 % never enrolled, FA@95 = never-enrolled probes "
             "whose best score reaches the pooled 95 %-detection threshold). Ratios against GE2E raw "
             "cosine (the peer) in the same run.",
             f"Machine: 2 cores shared; load average {la['start'][0]:.1f} at start, "
             f"{la['end'][0]:.1f} at end; "
             f"wall {res['wall_s']:.0f} s (embeddings from cache).", "",
             "| condition | scoring | EER | ratio | FA@95 | ratio | top-1 | espeak EER / FA@95 |",
             "|---|---|---|---|---|---|---|---|"]
    peer = {r["condition"]: r for r in res["rows"] if r["scoring"] == "GE2E raw cosine"}
    nan = float("nan")
    for r in res["rows"]:
        p, e = peer[r["condition"]], r["by_group"].get("espeak", {})
        lines.append(f"| {r['condition']} | {r['scoring']} | {_pct(r['eer'])} | {r['eer'] / p['eer']:.2f} | "
                     f"{_pct(r['fa_at_95_detection'])} | "
                     f"{r['fa_at_95_detection'] / max(p['fa_at_95_detection'], 1e-9):.2f} | "
                     f"{_pct(r['top1'])} | "
                     f"{_pct(e.get('eer', nan))} / {_pct(e.get('fa_at_95_detection', nan))} |")
    lines += ["", "Per held-out family, channel ~10 s (EER / FA@95):", "",
              "| family | " + " | ".join(SCORERS) + " |", "|---|" + "---|" * len(SCORERS)]
    pick = {r["scoring"]: r for r in res["rows"] if r["condition"] == "channel, ~10 s"}
    for fam in sorted(res["families"]):
        cells = []
        for s in SCORERS:
            b = pick[s]["by_group"].get(fam)
            cells.append("-" if b is None else f"{_pct(b['eer'])} / {_pct(b['fa_at_95_detection'])}")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/h18"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    t0, load0 = time.time(), os.getloadavg()
    models = args.models or Settings().models_dir
    sets: dict[str, dict[str, EmbeddedSet]] = {}
    for name in ("ge2e", "res2net"):
        eng = VoiceEngine(load_encoder(models, name, intra_op_threads=1))
        sets[name] = {c: embed_set(eng, scan_tree(args.corpus / c), augment=True, cache_dir=args.cache,
                                   label=f"{name} {c}") for c in ("clean", "channel")}
    sets["fused"] = {c: fused_set(sets["ge2e"][c], sets["res2net"][c]) for c in ("clean", "channel")}
    groups = speaker_groups(args.corpus / "clean", sorted(set(sets["ge2e"]["clean"].speakers)))
    res: dict[str, Any] = {"rows": evaluate(sets, groups, args.seed)}
    res["families"] = {f: sorted(s for s, g in groups.items() if g == f) for f in set(groups.values())}
    res["load_avg"] = {"start": load0, "end": os.getloadavg()}
    res["wall_s"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusion.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    write_markdown(res, args.out / "FUSION.md")


if __name__ == "__main__":
    main()
