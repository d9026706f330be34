"""Decisions/s of this checkout against another checkout of callvet (e.g. main before a refactor).

    nice .venv/bin/python bench/decision/ab.py --peer /path/to/other/checkout [--rounds 4] [--n 20000]

Each checkout runs in its own ``.venv`` (so each imports its own code), alternately, ``--rounds`` times;
each run is one process pinned to one core that times ``decide`` one by one (1,000) and ``decide_batch``
(``--n``) unstored, on the simulated population, by CPU time (less sensitive to a shared machine than
wall time). Printed: best and median per side and the ratios this/peer, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORKER = r'''
import json, os, sys, tempfile, time
from pathlib import Path
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from callvet.core.db import Database
from callvet.decision import DecisionEngine
from callvet.models import credit
try:
    from callvet.decision.credit import CreditScorer
except ImportError:  # before issue 10
    from callvet.decision.scoring import CreditScorer
try:
    from callvet.sim.decision import simulate
except ImportError:  # before issue 10
    from callvet.decision.simulate import simulate
models_dir, n = Path(sys.argv[1]), int(sys.argv[2])
if not credit.is_built(models_dir):
    credit.build(models_dir)
db = Database(f"sqlite:///{tempfile.mkdtemp()}/db")
db.create_schema()
eng = DecisionEngine(db, CreditScorer(models_dir))
pop = simulate(n, seed=11)
apps, invs = pop.applications, [v if i % 2 else None for i, v in enumerate(pop.investigations)]
def rate(k, fn, rep=3):
    best = 1e9
    for _ in range(rep):
        t0 = time.process_time(); fn(); best = min(best, time.process_time() - t0)
    return k / best
print(json.dumps({
    "single": rate(1000, lambda: [eng.decide(apps[i], invs[i], actor="b", store=False) for i in range(1000)]),
    "batch": rate(n, lambda: eng.decide_batch(apps, invs, actor="b", store=False)),
}))
'''


def _run(checkout: Path, models: Path, n: int) -> dict[str, float]:
    out = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", WORKER, str(models), str(n)],
                         cwd=checkout, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", type=Path, required=True, help="the other checkout (with its own .venv)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    models = Path(tempfile.mkdtemp(prefix="callvet-ab-"))
    runs: dict[str, list[dict[str, float]]] = {"this": [], "peer": []}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        runs["this"].append(_run(ROOT, models, args.n))
        runs["peer"].append(_run(args.peer, models, args.n))
    load1 = os.getloadavg()[0]
    for metric in ("single", "batch"):
        this = [r[metric] for r in runs["this"]]
        peer = [r[metric] for r in runs["peer"]]
        print(f"{metric:7s} best this {max(this):9.0f}/s peer {max(peer):9.0f}/s "
              f"ratio {max(this) / max(peer):.2f}"
              f" | median this {statistics.median(this):9.0f}/s peer {statistics.median(peer):9.0f}/s ratio "
              f"{statistics.median(this) / statistics.median(peer):.2f}")
    print(f"rounds {args.rounds}, n {args.n}, load average {load0:.1f} -> {load1:.1f} on "
          f"{os.cpu_count()} cores (shared machine)")


if __name__ == "__main__":
    main()
