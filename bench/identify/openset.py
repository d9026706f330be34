"""False alarms per call at real blacklist sizes, with whole voice families held out (issue 18).

Usage: python bench/identify/openset.py CORPUS_ROOT [--cache DIR] [--out bench/identify/OPENSET.md]

For each outer fold (one group of voice families held out), the shipped procedure runs on the other
families only: back end (NAP + WCCN + PLDA), s-norm cohort, and the open-set calibration from inner
leave-families-out scores (:func:`callvet.voice.openset.fit_openset`). The held-out speakers are split
into fraudsters (enrolled from 3 phone-channel utterances, one print each) and innocent callers (twice,
roles swapped); the list is filled to N identities with prints of the training families ("cohort
prints"). Calls are ~10 s of phone-channel speech, looked at 1.5 s, 4.5 s, 7.5 s and the end, as the
call server does; the thresholds are those the service would use for a call (looks up to 60 s).

A call is a false alarm when any look's best identity passes the tier's threshold; a fraudster is
named when a look passes with the right identity on top. The peer is the raw GE2E cosine with its
fixed threshold (0.90), measured on the same calls in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.backend import RECOMMENDED_CONFIG
from callvet.voice.engine import COSINE_THRESHOLD, VoiceEngine
from callvet.voice.fusion import backend_fitter
from callvet.voice.openset import Scorer, fit_openset, load_devset, score_heldout
from callvet.voice.tiers import TierConfig, decide, operating_points

FOLDS = [["espeak"], ["mbrola"], ["pico", "rhvoice"], ["festival", "flite"],
         ["asterisk", "fillets", "ktuberling"]]
SIZES = (10, 50, 1000)
ALARM_FAR, REVIEW_FAR = 0.01, 0.05
LOOK_FLOOR_S = 1.5
TIERS = TierConfig(ALARM_FAR, REVIEW_FAR, 6.0)
CALL_LOOKS_RATIO = 60.0 / LOOK_FLOOR_S
REVIEW_FARS: tuple[float, ...] = (0.05, 0.1, 0.2)


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    z = 1.96
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def outcome(ident: np.ndarray, look_s: np.ndarray, truth: int, alarm_t: float, review_t: float | None,
            min_alarm_s: float) -> dict[str, bool]:
    """One call, look by look as the service decides (:func:`callvet.voice.tiers.decide`): alarmed /
    flagged (alarm or review) by any look; named when such a look has the right identity on top."""
    out = {"alarm_flag": False, "alarm_named": False, "review_flag": False, "review_named": False}
    for i in range(len(ident)):
        best = float(ident[i].max())
        alarm, review, _ = decide(best, float(look_s[i]), alarm_t, review_t, min_alarm_s)
        right = truth >= 0 and int(ident[i].argmax()) == truth
        out["alarm_flag"] |= alarm
        out["alarm_named"] |= alarm and right
        out["review_flag"] |= alarm or review
        out["review_named"] |= (alarm or review) and right
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    ap.add_argument("--out", type=Path, default=Path("bench/identify/OPENSET.md"))
    ap.add_argument("--conditions", default="channel", help="corpus trees to use (comma-separated); the "
                    "back ends are trained on these + their simulated-channel copies")
    ap.add_argument("--encoder", default=None, help="encoder (default: the configured one); 'ge2e+res2net' "
                    "is the fused print, fitted as the service fits it (one PLDA per part, LLRs summed)")
    ap.add_argument("--review-far", default="0.05,0.1,0.2", help="review tier targets to report")
    ap.add_argument("--folds", default=None, help="outer folds to run (indices into FOLDS, comma-separated; "
                    "default all); with --rows-only the rows are written and merged later with --merge")
    ap.add_argument("--rows-only", action="store_true", help="write the rows JSON only, no report")
    ap.add_argument("--merge", nargs="*", type=Path, default=None, help="rows JSON files to merge into --out")
    args = ap.parse_args()
    t0 = time.time()
    if args.merge:
        merged = [r for f in args.merge for r in json.loads(f.read_text())]
        write_report(merged, args.out, float("nan"))
        return
    global REVIEW_FARS
    REVIEW_FARS = tuple(float(v) for v in args.review_far.split(","))
    settings = Settings(**({"encoder": args.encoder} if args.encoder else {}))
    engine = VoiceEngine.from_settings(settings, backend_dir=False)
    conditions = args.conditions.split(",")
    dev = load_devset(engine, args.corpus, cache_dir=args.cache, conditions=conditions)
    peer_dev = dev
    fit = backend_fitter(engine.encoder, RECOMMENDED_CONFIG)
    if hasattr(engine.encoder, "parts"):
        peer_dev = load_devset(VoiceEngine(engine.encoder.parts[0], vad=engine.vad), args.corpus,
                               cache_dir=args.cache, conditions=conditions)
    rows: list[dict] = []
    picked = [FOLDS[int(i)] for i in args.folds.split(",")] if args.folds else FOLDS
    for fold in picked:
        held = np.isin(dev.family, fold)
        train = ~held
        cal, backend, _ = fit_openset(dev, train, progress=lambda m: print("  ", m, flush=True), fit=fit)
        scorer = Scorer(backend, None)
        from callvet.voice.calibration import SNorm

        scorer.snorm = SNorm(cal.cohort, cal.meta["_cohort_stats"], backend.calibrate, cal.cohort_top_n)
        peer = Scorer(None, None)
        speakers = sorted(set(dev.speaker[held]))
        order = list(np.random.default_rng(7).permutation(speakers))
        halves = [order[::2], order[1::2]]
        perm = np.random.default_rng(3).permutation(int(train.sum()) * dev.aug.shape[1])
        filler_pool = dev.aug[train].reshape(-1, dev.emb.shape[1])[perm]
        peer_pool = peer_dev.aug[train].reshape(-1, peer_dev.emb.shape[1])[perm]
        print(f"fold {fold}: {len(speakers)} held-out speakers; gamma {cal.looks_gamma:.3f} "
              f"prints exp {cal.prints_exponent:.3f}", flush=True)
        for n in SIZES:
            for a, b in ((0, 1), (1, 0)):
                fraud = list(halves[a][:n])
                innocent = list(halves[b]) + list(halves[a][n:])
                filler = filler_pool[: n - len(fraud)]
                prints = 3 * len(fraud) + len(filler)
                ops = operating_points(cal, TIERS, n, prints, looks_ratio=CALL_LOOKS_RATIO,
                                       min_net_speech_s=LOOK_FLOOR_S)
                wider = {rf: operating_points(cal, TierConfig(ALARM_FAR, rf, TIERS.alarm_min_speech_s), n,
                                              prints, looks_ratio=CALL_LOOKS_RATIO,
                                              min_net_speech_s=LOOK_FLOOR_S)["review"] for rf in REVIEW_FARS}
                sc = score_heldout(scorer, dev, fraud, innocent, filler_raw=filler, overlap=True)
                sp = score_heldout(peer, peer_dev, fraud, innocent, filler_raw=peer_pool[: n - len(fraud)],
                                   normalise=False, overlap=True)
                for c in range(len(sc.looks)):
                    row = {"fold": "+".join(fold), "n": n, "family": str(sc.family[c]),
                           "innocent": bool(sc.truth[c] < 0)}
                    row.update(outcome(sc.looks[c], sc.look_s[c], int(sc.truth[c]), ops["alarm"]["threshold"],
                                       ops["review"]["threshold"], TIERS.alarm_min_speech_s))
                    for tier, op in ops.items():
                        row[f"{tier}_t"] = op["threshold"]
                        row[f"{tier}_expected_far"] = op["expected_far"]
                        row[f"{tier}_expected_det"] = op["expected_detection"]
                    for rf, op in wider.items():
                        o = outcome(sc.looks[c], sc.look_s[c], int(sc.truth[c]), ops["alarm"]["threshold"],
                                    op["threshold"], TIERS.alarm_min_speech_s)
                        row[f"r{rf}_flag"], row[f"r{rf}_named"] = o["review_flag"], o["review_named"]
                        row[f"r{rf}_expected_det"] = op["expected_detection"]
                    cos = outcome(sp.looks[c], sp.look_s[c], int(sp.truth[c]), COSINE_THRESHOLD, None, 0.0)
                    row["cos_flag"], row["cos_named"] = cos["alarm_flag"], cos["alarm_named"]
                    rows.append(row)
        done = [r for r in rows if r["fold"] == "+".join(fold)]
        inn = [r for r in done if r["innocent"]]
        print(f"  {len(done)} calls, {len(inn)} innocent; alarm FAR "
              f"{np.mean([r['alarm_flag'] for r in inn]):.3f}; {time.time() - t0:.0f}s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=0) + "\n")
    if not args.rows_only:
        write_report(rows, args.out, time.time() - t0)


def _rate(rs: list[dict], key: str) -> tuple[int, int]:
    return sum(bool(r[key]) for r in rs), len(rs)


def _fmt(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} ({k}/{n}; {lo:.3f}-{hi:.3f})"


def write_report(rows: list[dict], out: Path, secs: float) -> None:
    lines = ["# Open-set alarms with voice families held out (bench/identify/openset.py)", "",
             f"Run time {secs:.0f} s. Targets: alarm {ALARM_FAR:.0%} false alarms per call, review "
             f"{REVIEW_FAR:.0%} (at or above the review threshold, alarms included). Looks up to 60 s "
             "counted in the threshold (as the call server does). 95 % Wilson intervals.", "",
             "## Pooled over held-out folds", "",
             "| N | innocent calls | alarm FAR/call | expected | review FAR/call | expected "
             "| fraudster calls | named (alarm) | named (alarm or review) | expected det. "
             "| raw cosine 0.90 FAR/call | raw cosine named |",
             "|---:|---:|---|---:|---|---:|---:|---|---|---:|---|---|"]
    for n in SIZES:
        rs = [r for r in rows if r["n"] == n]
        inn = [r for r in rs if r["innocent"]]
        fr = [r for r in rs if not r["innocent"]]
        exp_a = np.mean([r["alarm_expected_far"] for r in rs])
        exp_r = np.mean([r["review_expected_far"] for r in rs])
        exp_d = np.mean([r["alarm_expected_det"] for r in rs])
        lines.append(
            f"| {n} | {len(inn)} | {_fmt(*_rate(inn, 'alarm_flag'))} | {exp_a:.3f} | "
            f"{_fmt(*_rate(inn, 'review_flag'))} | {exp_r:.3f} | {len(fr)} | "
            f"{_fmt(*_rate(fr, 'alarm_named'))} | "
            f"{_fmt(*_rate(fr, 'review_named'))} | {exp_d:.3f} | {_fmt(*_rate(inn, 'cos_flag'))} | "
            f"{_fmt(*_rate(fr, 'cos_named'))} |")
    lines += ["", "## Per held-out family (caller's family)", "",
              "| N | family | innocent calls | alarm FAR | review FAR | fraudster calls | named (alarm) | "
              "named (alarm or review) | cosine FAR | cosine named |",
              "|---:|---|---:|---|---|---:|---|---|---|---|"]
    for n in SIZES:
        for fam in sorted({r["family"] for r in rows}):
            rs = [r for r in rows if r["n"] == n and r["family"] == fam]
            inn = [r for r in rs if r["innocent"]]
            fr = [r for r in rs if not r["innocent"]]
            lines.append(
                f"| {n} | {fam} | {len(inn)} | {_fmt(*_rate(inn, 'alarm_flag'))} | "
                f"{_fmt(*_rate(inn, 'review_flag'))} | {len(fr)} | {_fmt(*_rate(fr, 'alarm_named'))} | "
                f"{_fmt(*_rate(fr, 'review_named'))} | {_fmt(*_rate(inn, 'cos_flag'))} | "
                f"{_fmt(*_rate(fr, 'cos_named'))} |")
    lines += ["", "## Review tier at other targets (pooled; alarm tier unchanged)", "",
              "| N | review target | innocent calls flagged (alarm or review) | fraudsters named (alarm or "
              "review) | expected det. |", "|---:|---:|---|---|---:|"]
    for n in SIZES:
        rs = [r for r in rows if r["n"] == n]
        inn = [r for r in rs if r["innocent"]]
        fr = [r for r in rs if not r["innocent"]]
        for rf in REVIEW_FARS:
            if f"r{rf}_flag" not in rs[0]:
                continue
            lines.append(f"| {n} | {rf:.0%} | {_fmt(*_rate(inn, f'r{rf}_flag'))} | "
                         f"{_fmt(*_rate(fr, f'r{rf}_named'))} | "
                         f"{np.mean([r[f'r{rf}_expected_det'] for r in rs]):.3f} |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
