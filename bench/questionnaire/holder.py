"""Issue 13's Done-when figures, per group: genuine owners, form-holders and guessers on fresh seeds.

    nice -n 10 .venv/bin/python bench/questionnaire/holder.py --seed-from 40000 --n 2000 [--encoder e5]

Groups: existing bank customers (the application carries ``bank_relationship``) vs new to the bank (only
bureau facts are independent of the form); form-holders who look numbers up vs readers (even pace);
the application's language. 95 % Wilson intervals. The engine's parameters were frozen before these
seeds were run; ``--seed-from`` must name seeds never used for tuning (tuning used 0-999).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from callvet.core.settings import default_models_dir
from callvet.questionnaire.scoring import Scorer
from callvet.sim.questionnaire import (
    EngineDriver,
    FormHolder,
    GenuineApplicant,
    Guesser,
    make_application,
    run_interview,
)

sys.path.insert(0, str(Path(__file__).parent))
from run import wilson

KINDS = [("genuine", GenuineApplicant, ">= 97 %"), ("form_holder", FormHolder, "<= 10 %"),
         ("guesser", Guesser, "< 1 %")]


def encoder(kind: str, models_dir: Path) -> Any:
    if kind == "none":
        return None
    from callvet.questionnaire.encoder import load_encoder

    return load_encoder(models_dir, kind=kind)


def run(seeds: range, scorer: Scorer) -> dict[str, dict[str, list[int]]]:
    """{kind: {group: [pass, fail, inconclusive]}} with group "all" included."""
    driver = EngineDriver(scorer)
    out: dict[str, dict[str, list[int]]] = {}
    for name, cls, _ in KINDS:
        groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for seed in seeds:
            app = make_application(seed)
            caller = cls(app, random.Random(seed * 31 + len(name)))
            verdict = run_interview(driver, caller)["result"]["verdict"]
            col = {"pass": 0, "fail": 1, "inconclusive": 2}[verdict]
            keys = ["all", "bank customer" if app.get_path("bank_relationship") else "new to the bank",
                    f"language {app.lang}"]
            if isinstance(caller, FormHolder):
                keys.append("reads at one pace" if caller.reader else "looks numbers up")
            for k in keys:
                groups[k][col] += 1
        out[name] = dict(groups)
    return out


def table(res: dict[str, dict[str, list[int]]]) -> list[str]:
    lines = ["| caller | group | n | pass | fail | inconclusive | pass rate | 95 % CI | target |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for name, _, target in KINDS:
        for group, (p, f, i) in sorted(res[name].items(), key=lambda kv: (kv[0] != "all", kv[0])):
            n = p + f + i
            lo, hi = wilson(p, n)
            lo = max(0.0, lo)
            lines.append(f"| {name} | {group} | {n} | {p} | {f} | {i} | {p / n:.2%} | "
                         f"{lo:.2%}-{hi:.2%} | {target if group == 'all' else ''} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed-from", type=int, default=40_000)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--encoder", choices=["minilm", "e5", "none"], default="minilm")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    seeds = range(args.seed_from, args.seed_from + args.n)
    t0 = time.perf_counter()
    res = run(seeds, Scorer(encoder(args.encoder, args.models_dir)))
    lines = [f"# Form-holder population, seeds {seeds.start}-{seeds.stop - 1}, encoder {args.encoder}", "",
             f"`bench/questionnaire/holder.py --seed-from {args.seed_from} --n {args.n} --encoder "
             f"{args.encoder}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{time.perf_counter() - t0:.0f} s)", "", *table(res), ""]
    text = "\n".join(lines)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
