"""Open-set alarms on held-out voice families with an in-domain null from recent calls (issue 18).

Usage: python bench/identify/indomain.py CORPUS_ROOT [--cache DIR] [--folds 0,1] [--out FILE.md]
       python bench/identify/indomain.py --report DUMP.pkl [DUMP.pkl ...] --out FILE.md

Same protocol as bench/identify/openset.py (outer folds hold whole families out of the back end, the
cohort and the calibration; ~10 s phone-channel calls looked at 1.5 / 4.5 / 7.5 s and the end; the
list filled to N with cohort prints), except that the held-out family's speakers are split into
THREE disjoint groups: fraudsters (enrolled), innocent callers, and "recent callers" whose call
prints stand for the recent calls callvet keeps (unlabelled; used only through
:func:`callvet.voice.indomain.fit_indomain`). Roles rotate, so every held-out speaker is an innocent
caller once. Nothing of the held-out family's labels enters any fit.

Three rows per call, measured on the same calls in the same run: the shipped calibration alone, the
calibration with the in-domain null, and the raw GE2E cosine at its fixed threshold (0.90).
The scores are dumped (``--dump``) so the decision rules can be re-read without re-scoring.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openset import CALL_LOOKS_RATIO, FOLDS, LOOK_FLOOR_S, SIZES, TIERS, _fmt, outcome

ROTATIONS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))
KINDS = (("cal", "calibration"), ("dom", "calibration + in-domain null"), ("cos", "raw cosine 0.90"))
SNORM_KINDS = (("free", "in-domain null alone, 99 % upper bound, no calibration floor"),
               ("cosd", "raw cosine + in-domain null"), ("half", "in-domain null, half the recent callers"),
               ("snd", "other half in the s-norm cohort + in-domain null"))


def _recent_prints(scorer: Any, dev: Any, speakers: list[str]) -> np.ndarray:
    """Final-look prints of the speakers' simulated calls (what the call-print store keeps)."""
    from callvet.voice.openset import _calls, call_looks

    chan = dev.cond == "channel"
    out = []
    for spk in speakers:
        rows = list(np.flatnonzero(chan & (dev.speaker == spk)))
        for call in _calls(rows, dev.net_s, overlap=True):
            lk = call_looks([dev.partials[r] for r in call], [float(dev.net_s[r]) for r in call])
            out.append(lk[-1][0])
    return scorer.prints(np.stack(out))


def score_fold(dev: Any, peer_dev: Any, fold: list[str], fit: Any, *,
               snorm_recent: bool = False) -> dict[str, Any]:
    from callvet.voice.calibration import SNorm
    from callvet.voice.openset import Scorer, fit_openset, score_heldout

    held = np.isin(dev.family, fold)
    train = ~held
    cal, backend, _ = fit_openset(dev, train, progress=lambda m: print("  ", m, flush=True), fit=fit)
    scorer = Scorer(backend, None)
    scorer.snorm = SNorm(cal.cohort, cal.meta["_cohort_stats"], backend.calibrate, cal.cohort_top_n)
    peer = Scorer(None, None)
    speakers = sorted(set(dev.speaker[held]))
    order = list(np.random.default_rng(7).permutation(speakers))
    thirds = [order[0::3], order[1::3], order[2::3]]
    perm = np.random.default_rng(3).permutation(int(train.sum()) * dev.aug.shape[1])
    filler_pool = dev.aug[train].reshape(-1, dev.emb.shape[1])[perm]
    peer_pool = peer_dev.aug[train].reshape(-1, peer_dev.emb.shape[1])[perm]
    cases = []
    for n in SIZES:
        for f, i, r in ROTATIONS:
            fraud = list(thirds[f][:n])
            innocent = list(thirds[i]) + list(thirds[f][n:])
            recent = list(thirds[r])
            filler = filler_pool[: n - len(fraud)]
            sc = score_heldout(scorer, dev, fraud, innocent, filler_raw=filler, overlap=True)
            rc = score_heldout(scorer, dev, fraud, recent, filler_raw=filler, overlap=True,
                               probe_fraudsters=False)
            sp = score_heldout(peer, peer_dev, fraud, innocent, filler_raw=peer_pool[: n - len(fraud)],
                               normalise=False, overlap=True)
            extra: dict[str, Any] = {}
            if snorm_recent:
                # Half the recent callers join the s-norm cohort; the other half's calls give the null.
                half_a, half_b = recent[0::2], recent[1::2]
                sn = Scorer(backend, None)
                cv = np.concatenate([cal.cohort, _recent_prints(scorer, dev, half_a)])
                sn.snorm = SNorm(cv, np.asarray(backend.cohort_stats(cv)), backend.calibrate,
                                 cal.cohort_top_n)
                s2 = score_heldout(sn, dev, fraud, innocent, filler_raw=filler, overlap=True)
                r2 = score_heldout(sn, dev, fraud, half_b, filler_raw=filler, overlap=True,
                                   probe_fraudsters=False)
                r1 = score_heldout(scorer, dev, fraud, half_b, filler_raw=filler, overlap=True,
                                   probe_fraudsters=False)
                extra = {"sn_looks": s2.looks, "sn_recent": np.stack([lk[-1] for lk in r2.looks]),
                         "half_recent": np.stack([lk[-1] for lk in r1.looks])}
            rcc = score_heldout(peer, peer_dev, fraud, recent, filler_raw=peer_pool[: n - len(fraud)],
                                normalise=False, overlap=True, probe_fraudsters=False)
            extra["cos_recent"] = np.stack([lk[-1] for lk in rcc.looks])
            cases.append({**extra, "n": n, "rotation": (f, i, r), "prints": 3 * len(fraud) + len(filler),
                          "looks": sc.looks, "look_s": sc.look_s, "truth": sc.truth, "family": sc.family,
                          "cos_looks": sp.looks, "cos_look_s": sp.look_s,
                          "recent": np.stack([lk[-1] for lk in rc.looks]) if rc.looks else None,
                          "recent_speakers": len(recent)})
            print(f"  n={n} rot={f}{i}{r}: {len(sc.looks)} calls, {len(rc.looks)} recent calls", flush=True)
    cal.cohort = None
    return {"fold": "+".join(fold), "cal": cal, "cases": cases}


def _floorless(cal: Any, null: Any, n: int, conf: float = 0.99) -> dict[str, dict[str, Any]]:
    """Thresholds from the in-domain null alone (no calibration floor), its mean and sd replaced by
    one-sided ``conf`` upper bounds (Student t, chi-square) for the number of recent calls."""
    from scipy.special import ndtri
    from scipy.stats import chi2
    from scipy.stats import t as student

    k = null.n_calls
    sd = null.sd * math.sqrt((k - 1) / chi2.ppf(1 - conf, k - 1))
    mu = null.mean + student.ppf(conf, k - 1) * null.sd / math.sqrt(k)
    out = {}
    tiers = (("alarm", TIERS.alarm_far, 10.0), ("review", TIERS.review_far, CALL_LOOKS_RATIO))
    for tier, far, ratio in tiers:
        looks = 1 + cal.looks_gamma * math.log(ratio)
        p = -math.expm1(math.log1p(-far) / looks)
        out[tier] = {"threshold": float(mu + sd * ndtri(1 - p)), "expected_far": far,
                     "expected_detection": float("nan")}
    return out


def evaluate(dump: dict[str, Any]) -> list[dict[str, Any]]:
    from callvet.voice.engine import COSINE_THRESHOLD
    from callvet.voice.indomain import fit_indomain
    from callvet.voice.tiers import operating_points

    cal = dump["cal"]
    rows = []
    for case in dump["cases"]:
        n, prints = case["n"], case["prints"]
        kw = {"looks_ratio": CALL_LOOKS_RATIO, "min_net_speech_s": LOOK_FLOOR_S}
        ops = {"cal": operating_points(cal, TIERS, n, prints, **kw)}
        null = None if case["recent"] is None else fit_indomain(case["recent"])
        ops["dom"] = operating_points(cal, TIERS, n, prints, in_domain=null, **kw)
        looks_of = {"cal": case["looks"], "dom": case["looks"]}
        if null is not None:
            ops["free"] = _floorless(cal, null, n)
            looks_of["free"] = case["looks"]
        if "sn_looks" in case:
            for kind, key in (("half", "half_recent"), ("snd", "sn_recent")):
                ops[kind] = operating_points(cal, TIERS, n, prints, in_domain=fit_indomain(case[key]), **kw)
            looks_of.update({"half": case["looks"], "snd": case["sn_looks"]})
        cos_t = None
        if "cos_recent" in case and (cn := fit_indomain(case["cos_recent"])) is not None:
            # Raw cosine with only the in-domain null (floored at the fixed 0.90): alarm looks from 6 s
            # (looks ratio 10), review from 1.5 s (40), the calibration's looks gamma.
            g = cal.looks_gamma
            looks_a, looks_r = 1 + g * math.log(10.0), 1 + g * math.log(CALL_LOOKS_RATIO)
            cos_t = (max(COSINE_THRESHOLD, cn.threshold(TIERS.alarm_far, looks_a)),
                     max(COSINE_THRESHOLD, cn.threshold(TIERS.review_far, looks_r)))
        for c in range(len(case["looks"])):
            truth = int(case["truth"][c])
            row = {"fold": dump["fold"], "n": n, "family": str(case["family"][c]), "innocent": truth < 0,
                   "recent_calls": 0 if null is None else null.n_calls}
            for kind in looks_of:
                o = outcome(looks_of[kind][c], case["look_s"][c], truth, ops[kind]["alarm"]["threshold"],
                            ops[kind]["review"]["threshold"], TIERS.alarm_min_speech_s)
                row.update({f"{kind}_{k}": v for k, v in o.items()})
                row[f"{kind}_alarm_t"] = ops[kind]["alarm"]["threshold"]
                row[f"{kind}_exp_far"] = ops[kind]["alarm"]["expected_far"]
                row[f"{kind}_exp_det"] = ops[kind]["alarm"]["expected_detection"]
            if cos_t is not None:
                o = outcome(case["cos_looks"][c], case["cos_look_s"][c], truth, cos_t[0], cos_t[1],
                            TIERS.alarm_min_speech_s)
                row.update({f"cosd_{k}": v for k, v in o.items()})
                row["cosd_alarm_t"] = cos_t[0]
            cos = outcome(case["cos_looks"][c], case["cos_look_s"][c], truth, COSINE_THRESHOLD, None, 0.0)
            row["cos_alarm_flag"], row["cos_alarm_named"] = cos["alarm_flag"], cos["alarm_named"]
            row["cos_review_flag"], row["cos_review_named"] = cos["alarm_flag"], cos["alarm_named"]
            rows.append(row)
    return rows


def _rate(rs: list[dict[str, Any]], key: str) -> tuple[int, int]:
    return sum(bool(r[key]) for r in rs), len(rs)


def report(rows: list[dict[str, Any]], out: Path, secs: float, load: str) -> None:
    kinds = [k for k in (*KINDS, *SNORM_KINDS) if all(f"{k[0]}_alarm_flag" in r for r in rows)]
    lines = ["# Open-set alarms on held-out families with an in-domain null from recent calls "
             "(bench/identify/indomain.py)", "",
             f"Run time {secs:.0f} s; load average {load}. Targets: alarm 1 % false alarms per call, review "
             "5 % (alarm or review). Held-out family split in three (fraudsters / innocent callers / "
             "recent callers, rotated); recent callers' ~10 s call prints are the in-domain sample. "
             "95 % Wilson intervals. Peers in the same run: the shipped calibration alone and the raw "
             "cosine.", "", "## Pooled over held-out folds", "",
             "| N | method | innocent calls | alarm FAR/call | alarm or review FAR/call | fraudster calls | "
             "named (alarm) | named (alarm or review) | mean alarm threshold |",
             "|---:|---|---:|---|---|---:|---|---|---:|"]
    for n in SIZES:
        rs = [r for r in rows if r["n"] == n]
        inn = [r for r in rs if r["innocent"]]
        fr = [r for r in rs if not r["innocent"]]
        for kind, label in kinds:
            thr = f"{np.mean([r[f'{kind}_alarm_t'] for r in rs]):.2f}" if kind != "cos" else "0.90"
            lines.append(f"| {n} | {label} | {len(inn)} | {_fmt(*_rate(inn, f'{kind}_alarm_flag'))} | "
                         f"{_fmt(*_rate(inn, f'{kind}_review_flag'))} | {len(fr)} | "
                         f"{_fmt(*_rate(fr, f'{kind}_alarm_named'))} | "
                         f"{_fmt(*_rate(fr, f'{kind}_review_named'))} | {thr} |")
    lines += ["", "## Per held-out fold (family group)", "",
              "| N | fold | method | innocent calls | alarm FAR/call | alarm or review FAR/call | "
              "fraudster calls | named (alarm) | named (alarm or review) |",
              "|---:|---|---|---:|---|---|---:|---|---|"]
    for n in SIZES:
        for fold in sorted({r["fold"] for r in rows}):
            rs = [r for r in rows if r["n"] == n and r["fold"] == fold]
            inn = [r for r in rs if r["innocent"]]
            fr = [r for r in rs if not r["innocent"]]
            for kind, label in kinds:
                lines.append(f"| {n} | {fold} | {label} | {len(inn)} | "
                             f"{_fmt(*_rate(inn, f'{kind}_alarm_flag'))} | "
                             f"{_fmt(*_rate(inn, f'{kind}_review_flag'))} | {len(fr)} | "
                             f"{_fmt(*_rate(fr, f'{kind}_alarm_named'))} | "
                             f"{_fmt(*_rate(fr, f'{kind}_review_named'))} |")
    lines += ["", "## Per caller family (alarm FAR/call: calibration -> + in-domain; cosine)", "",
              "| N | family | innocent calls | calibration | + in-domain | raw cosine |",
              "|---:|---|---:|---|---|---|"]
    for n in SIZES:
        for fam in sorted({r["family"] for r in rows}):
            inn = [r for r in rows if r["n"] == n and r["family"] == fam and r["innocent"]]
            lines.append(f"| {n} | {fam} | {len(inn)} | {_fmt(*_rate(inn, 'cal_alarm_flag'))} | "
                         f"{_fmt(*_rate(inn, 'dom_alarm_flag'))} | {_fmt(*_rate(inn, 'cos_alarm_flag'))} |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path, nargs="?")
    ap.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    ap.add_argument("--folds", default=None, help="outer folds (indices into FOLDS); default all")
    ap.add_argument("--dump", type=Path, default=Path("bench/out/indomain"), help="score dumps go here")
    ap.add_argument("--report", nargs="*", type=Path, default=None, help="dumps to report on (no scoring)")
    ap.add_argument("--out", type=Path, default=Path("bench/identify/INDOMAIN.md"))
    ap.add_argument("--snorm-recent", action="store_true", help="also: half the recent callers in the s-norm "
                    "cohort, the other half's calls as the in-domain null (and that half alone as its peer)")
    ap.add_argument("--load", default="", help="load average before the run (for the report)")
    args = ap.parse_args()
    t0 = time.time()
    if args.report:
        dumps = [pickle.loads(p.read_bytes()) for p in args.report]
        rows = [r for d in dumps for r in evaluate(d)]
        secs = sum(d.get("secs", 0.0) for d in dumps)
        report(rows, args.out, secs, args.load or ", ".join(d.get("load", "") for d in dumps))
        return
    from callvet.core.settings import Settings
    from callvet.voice.backend import RECOMMENDED_CONFIG
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.fusion import backend_fitter
    from callvet.voice.openset import load_devset

    engine = VoiceEngine.from_settings(Settings(), backend_dir=False)
    dev = load_devset(engine, args.corpus, cache_dir=args.cache, conditions=["channel"])
    fit = backend_fitter(engine.encoder, RECOMMENDED_CONFIG)
    args.dump.mkdir(parents=True, exist_ok=True)
    picked = [int(i) for i in args.folds.split(",")] if args.folds else range(len(FOLDS))
    for k in picked:
        t1 = time.time()
        load0 = Path("/proc/loadavg").read_text().split()[:3]
        d = score_fold(dev, dev, FOLDS[k], fit, snorm_recent=args.snorm_recent)
        d["secs"] = time.time() - t1
        load1 = Path("/proc/loadavg").read_text().split()[:3]
        d["load"] = f"fold {k}: {' '.join(load0)} -> {' '.join(load1)}"
        path = args.dump / f"fold{k}{'-sn' if args.snorm_recent else ''}.pkl"
        path.write_bytes(pickle.dumps(d))
        rows = evaluate(d)
        for kind, _ in (*KINDS, *(SNORM_KINDS if args.snorm_recent else ())):
            inn = [r for r in rows if r["innocent"]]
            far = np.mean([r[f"{kind}_alarm_flag"] for r in inn])
            print(f"fold {k} {kind}: alarm FAR {far:.3f}", flush=True)
        print(f"fold {k} done in {d['secs']:.0f}s -> {path}", flush=True)
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
