"""Portrait benchmark: tag quality against hidden truth, and tag computation at scale (DuckDB vs pandas).

Two parts, each printing a JSON line per measurement and a summary table:

``quality`` -- for each seed (none used in tests or development: tests use 101, 5, 6, 77; the response
model was chosen on 555-557 with ``lift_dev.py``; figures in BENCHMARKS.md: 231-235, 241-245), generate
a bank of ``--customers`` customers, build it exactly as ``callvet portrait build`` does (propensity models
trained on the recorded campaigns, every active definition), then

- agreement of each rule tag with the customer's hidden true class (``truth.parquet``, never read by a
  definition),
- top-decile lift of the response model on a *later* simulated card-offer campaign (outcomes drawn from
  the true propensity moved by drift; nothing of it is seen at training) with its bootstrap interval,
  the expected (noise-free) lift, the same for the peer (the previous response definition, trained in
  the same run) and the oracle (hidden true propensity), and the lift of card binding on a later
  binding push; at the end the mean over seeds with a 95 % t interval.

``scale`` -- a bank of ``--customers`` customers (1M gives ~55M transactions) and the five rule tags
computed two ways in separate processes (peak RSS is per process):

- ``duckdb``: the shipped definitions, run by ``tags.run_definition`` (SQL over Parquet), 1 and 2
  threads;
- ``pandas``: the peer, the same facts written as pandas group-bys and the same rules (the definitions'
  own ``when`` expressions evaluated by ``DataFrame.eval``).

The tags of both engines are compared customer by customer (must be identical), and the ratio of
wall times is printed. Run:

    nice -n 10 .venv/bin/python bench/portrait/run.py quality --customers 100000 --seeds 231 232 233 234 235
    nice -n 10 .venv/bin/python bench/portrait/run.py scale --customers 1000000
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

RULE_DIMS = ("risk_level", "value", "stickiness", "preference", "lifecycle")
AS_OF = 360


def _lift(scores: dict[int, float], camp: dict[str, np.ndarray]) -> tuple[float, float, float]:
    p = np.array([scores[int(c)] for c in camp["customer_id"]])
    y = np.asarray(camp["responded"], dtype=float)
    top = np.argsort(-p, kind="stable")[: len(p) // 10]
    return float(y[top].mean() / y.mean()), float(y[top].mean()), float(y.mean())


def _lift_interval(p: np.ndarray, y: np.ndarray, *, reps: int = 400, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the top-decile lift over the campaign's customers: how much the one
    simulated campaign's figure would move with another draw of the same size."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        i = rng.integers(0, p.size, p.size)
        top = i[np.argsort(-p[i], kind="stable")[: p.size // 10]]
        out.append(y[top].mean() / y[i].mean())
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(lo), float(hi)


def _expected_lift(score: np.ndarray, p_true: np.ndarray) -> float:
    """Top-decile lift in expectation: the true propensity of the model's top decile of all customers
    over the mean (no campaign draw, so no sampling noise)."""
    top = np.argsort(-score, kind="stable")[: score.size // 10]
    return float(p_true[top].mean() / p_true.mean())


def _peer_response_scores(bank: Path) -> dict[int, float]:
    """The peer: the response definition served before this change (bench/portrait/peer_response_v1.json,
    17 + 5 features), trained and scored the same way on the same bank in the same run."""
    from callvet.portrait import propensity, tags

    peer = json.loads((Path(__file__).parent / "peer_response_v1.json").read_text())
    con = tags.connect(bank)
    try:
        propensity.train(con, peer, bank / "peer_models", as_of_day=AS_OF)
        t, _ = propensity.score(con, peer, bank / "peer_models", as_of_day=AS_OF)
    finally:
        con.close()
    return dict(zip(t["customer_id"].to_pylist(), t["score"].to_pylist(), strict=True))


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    from callvet.core.db import Database
    from callvet.portrait import service
    from callvet.portrait.generate import BankSpec, generate, simulate_campaign

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="pbench-") as tmp:
            bank = Path(tmp) / "bank"
            t0 = time.perf_counter()
            generate(bank, BankSpec(n_customers=args.customers, seed=seed))
            t_gen = time.perf_counter() - t0
            db = Database(f"sqlite:///{tmp}/callvet.db")
            db.create_schema()
            t0 = time.perf_counter()
            info = service.build(db, bank, actor="bench:portrait")
            t_build = time.perf_counter() - t0
            tagged = pq.read_table(bank / "tags.parquet").to_pandas().set_index("customer_id")
            truth = pq.read_table(bank / "truth.parquet").to_pandas().set_index("customer_id")
            row: dict[str, Any] = {
                "seed": seed,
                "customers": args.customers,
                "generate_s": round(t_gen, 1),
                "build_s": round(t_build, 1),
            }
            for dim in RULE_DIMS:
                row[f"agree_{dim}"] = round(
                    float((tagged[dim] == truth.loc[tagged.index, dim].astype(str)).mean()), 4
                )
            for dim, kind in (("response", "card_offer"), ("card_binding", "app_binding")):
                score = dict(zip(tagged.index, tagged[f"{dim}__score"], strict=True))
                camp = simulate_campaign(bank, seed=seed + 10_000, kind=kind, fraction=0.3)
                lift, top, base = _lift(score, camp)
                row[f"lift_{dim}"] = round(lift, 2)
                row[f"top_decile_rate_{dim}"] = round(top, 4)
                row[f"base_rate_{dim}"] = round(base, 4)
                row[f"holdout_auc_{dim}"] = info["trained"][dim].get("holdout_auc")
            row.update(_response_detail(bank, tagged, truth, seed))
            db.engine.dispose()
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _response_detail(bank: Path, tagged: pd.DataFrame, truth: pd.DataFrame, seed: int) -> dict[str, Any]:
    """The response lift with its bootstrap interval, beside the peer model and the oracle (ranking by
    the hidden true propensity) on the same campaign, and the expected (noise-free) lifts."""
    from callvet.portrait.generate import simulate_campaign

    camp = simulate_campaign(bank, seed=seed + 10_000, kind="card_offer", fraction=0.3)
    served = dict(zip(tagged.index, tagged["response__score"], strict=True))
    peer = _peer_response_scores(bank)
    p_true = truth.loc[tagged.index, "p_response"].to_numpy(dtype=float)
    oracle = dict(zip(tagged.index, p_true, strict=True))
    y = np.asarray(camp["responded"], dtype=float)
    p = np.array([served[int(c)] for c in camp["customer_id"]])
    lo, hi = _lift_interval(p, y, seed=seed)
    peer_s = np.array([peer[int(c)] for c in tagged.index])
    return {
        "lift_response_ci95": [round(lo, 2), round(hi, 2)],
        "lift_response_peer": round(_lift(peer, camp)[0], 2),
        "lift_response_oracle": round(_lift(oracle, camp)[0], 2),
        "expected_lift_response": round(_expected_lift(tagged["response__score"].to_numpy(), p_true), 3),
        "expected_lift_response_peer": round(_expected_lift(peer_s, p_true), 3),
        "expected_lift_response_oracle": round(_expected_lift(p_true, p_true), 3),
    }


def _summary(rows: list[dict[str, Any]]) -> None:
    """Mean response lift over the seeds with a 95 % t interval, and the ratio to the peer."""
    from scipy import stats

    for key in (
        "lift_response",
        "lift_response_peer",
        "expected_lift_response",
        "expected_lift_response_peer",
    ):
        v = np.array([r[key] for r in rows], dtype=float)
        half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
        print(
            json.dumps(
                {
                    "mean": key,
                    "value": round(float(v.mean()), 3),
                    "t95_half_width": round(half, 3),
                    "min": round(float(v.min()), 3),
                    "seeds": v.size,
                }
            )
        )
    ratio = np.mean([r["lift_response"] / r["lift_response_peer"] for r in rows])
    print(json.dumps({"served_over_peer_lift": round(float(ratio), 3)}))


def _sql_to_pandas(expr: str) -> str:
    expr = re.sub(r"(?<![<>!=])=(?!=)", "==", expr)
    return re.sub(r"\bAND\b", "and", re.sub(r"\bOR\b", "or", expr))


def _apply_rules(facts: pd.DataFrame, dim: str) -> pd.Series:
    from callvet.portrait import tags

    rules, default = tags._rules(tags.shipped_definition(dim))
    masks = [facts.eval(_sql_to_pandas(r["when"])).to_numpy(dtype=bool) for r in rules]
    if default.startswith("'"):
        fallback: Any = default.strip("'")
    else:
        fallback = facts[default].to_numpy()
    return pd.Series(np.select(masks, [r["tag"] for r in rules], fallback), index=facts.index)


def pandas_tags(bank: Path) -> pd.DataFrame:
    """The peer: the five rule tags' facts as pandas group-bys over the same Parquet files."""
    cust = pd.read_parquet(bank / "customers.parquet", columns=["customer_id", "onboard_day"])
    cust = cust.set_index("customer_id").sort_index()
    acc = pd.read_parquet(bank / "accounts.parquet")
    acc_g = acc.groupby("customer_id")
    tx = pd.read_parquet(bank / "transactions.parquet", columns=["customer_id", "mcc", "amount", "day"])
    rep_t = pd.read_parquet(bank / "repayments.parquet", columns=["customer_id", "days_past_due"])
    rep = rep_t.groupby("customer_id")
    mcc = pd.read_parquet(bank / "mcc.parquet")
    idx = cust.index
    out = pd.DataFrame(index=idx)

    aum = acc_g["avg_balance"].sum().reindex(idx, fill_value=0)
    spend = tx.groupby("customer_id")["amount"].sum().reindex(idx, fill_value=0)
    f = pd.DataFrame({"aum": aum, "spend_12m": spend})
    f["contribution_12m"] = 0.015 * f.aum + 0.006 * f.spend_12m
    out["value"] = _apply_rules(f, "value")

    f = pd.DataFrame(
        {
            "n_accounts": acc_g.size().reindex(idx, fill_value=0),
            "payroll": acc_g["payroll"].max().astype(int).reindex(idx, fill_value=0),
        }
    )
    out["stickiness"] = _apply_rules(f, "stickiness")

    cat = pd.Series(mcc.category.astype(str).to_numpy(), index=mcc.mcc.to_numpy())
    g = (
        tx.assign(category=cat.reindex(tx.mcc.to_numpy()).to_numpy())
        .groupby(["customer_id", "category"], observed=True)["amount"]
        .agg(["size", "sum"])
        .reset_index()
    )
    g["total"] = g.groupby("customer_id")["size"].transform("sum")
    g = g.sort_values(["customer_id", "size", "sum", "category"], ascending=[True, False, False, True])
    top = g.drop_duplicates("customer_id").set_index("customer_id").reindex(idx)
    f = pd.DataFrame(
        {"top_category": top.category.fillna("none"), "txns_12m": top.total.fillna(0)}, index=idx
    )
    out["preference"] = _apply_rules(f, "preference")

    last = tx.groupby("customer_id")["day"].max().reindex(idx)
    h2 = (tx.day >= 180).groupby(tx.customer_id).sum().reindex(idx, fill_value=0)
    n = tx.groupby("customer_id").size().reindex(idx, fill_value=0)
    h1 = n - h2
    f = pd.DataFrame(
        {
            "tenure_days": AS_OF - cust.onboard_day,
            "days_since_last_txn": AS_OF - last.fillna(cust.onboard_day),
            "half_year_ratio": (h2 + 1.0) / (h1 + 1.0),
        }
    )
    out["lifecycle"] = _apply_rules(f, "lifecycle")

    f = pd.DataFrame(
        {
            "max_dpd_12m": rep["days_past_due"].max().reindex(idx, fill_value=0),
            "late_months_12m": (rep_t.days_past_due > 0)
            .groupby(rep_t.customer_id)
            .sum()
            .reindex(idx, fill_value=0),
            "returned_debits_12m": acc_g["returned_debits_12m"].sum().reindex(idx, fill_value=0),
        }
    )
    out["risk_level"] = _apply_rules(f, "risk_level")
    return out[list(RULE_DIMS)]


def duckdb_tags(bank: Path, threads: int) -> pd.DataFrame:
    from callvet.portrait import tags

    con = tags.connect(bank, threads=threads)
    cols: dict[str, Any] = {}
    ids = None
    for dim in RULE_DIMS:
        t = tags.run_definition(con, tags.shipped_definition(dim), as_of_day=AS_OF)
        t = t.sort_by("customer_id")
        ids = t["customer_id"].to_numpy()
        cols[dim] = t["tag"].to_numpy(zero_copy_only=False)
    con.close()
    return pd.DataFrame(cols, index=pd.Index(ids, name="customer_id"))


def _engine(args: argparse.Namespace) -> None:
    bank = Path(args.bank)
    t0 = time.perf_counter()
    df = pandas_tags(bank) if args.engine == "pandas" else duckdb_tags(bank, args.threads)
    wall = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    df.reset_index().to_parquet(args.out)
    print(
        json.dumps(
            {
                "engine": args.engine,
                "threads": args.threads,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 2),
                "peak_rss_mb": round(cpu.ru_maxrss / 1024),
            }
        )
    )


def scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    from callvet.portrait.generate import BankSpec, generate

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pbench-", dir=args.tmp) as tmp:
        bank = Path(tmp) / "bank"
        t0 = time.perf_counter()
        manifest = generate(bank, BankSpec(n_customers=args.customers, seed=args.seed))
        print(
            json.dumps(
                {
                    "generated": manifest["rows"],
                    "seconds": round(time.perf_counter() - t0, 1),
                    "parquet_mb": round(sum(p.stat().st_size for p in bank.glob("*.parquet")) / 2**20),
                }
            ),
            flush=True,
        )
        results: dict[str, pd.DataFrame] = {}
        for engine, threads in (("duckdb", 1), ("duckdb", 2), ("pandas", 1)):
            out = Path(tmp) / f"{engine}{threads}.parquet"
            cmd = [sys.executable, __file__, "_engine", "--engine", engine, "--threads", str(threads)]
            cmd += ["--bank", str(bank), "--out", str(out)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
            row = json.loads(line.splitlines()[-1])
            row["customers"] = manifest["rows"]["customers"]
            row["transactions"] = manifest["rows"]["transactions"]
            print(json.dumps(row), flush=True)
            rows.append(row)
            results[f"{engine}{threads}"] = pd.read_parquet(out).set_index("customer_id").sort_index()
        ref = results["duckdb1"]
        for name, df in results.items():
            same = {d: int((df[d].astype(str) == ref[d].astype(str)).sum()) for d in RULE_DIMS}
            print(json.dumps({"compare": name, "vs": "duckdb1", "identical_per_tag": same, "n": len(ref)}))
            if any(v != len(ref) for v in same.values()):
                raise SystemExit(f"{name} differs from duckdb: {same}")
        pandas_wall = next(r["wall_s"] for r in rows if r["engine"] == "pandas")
        for r in rows:
            r["speedup_vs_pandas"] = round(pandas_wall / r["wall_s"], 2)
        print("engine  threads  wall s  cpu s  peak RSS MB  speed-up vs pandas")
        for r in rows:
            print(
                f"{r['engine']:7} {r['threads']:7} {r['wall_s']:7} {r['cpu_s']:6} {r['peak_rss_mb']:12}"
                f"  {r['speedup_vs_pandas']}"
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--customers", type=int, default=100_000)
    q.add_argument("--seeds", type=int, nargs="+", default=[201, 202, 203])
    s = sub.add_parser("scale")
    s.add_argument("--customers", type=int, default=1_000_000)
    s.add_argument("--seed", type=int, default=301)
    s.add_argument("--tmp", default=None)
    e = sub.add_parser("_engine")
    e.add_argument("--engine", choices=("duckdb", "pandas"), required=True)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--bank", required=True)
    e.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "quality":
        rows = quality(args)
        _summary(rows)
        keys = [k for k in rows[0] if k.startswith(("agree_", "lift_"))]
        print("seed   " + "  ".join(keys))
        for r in rows:
            print(f"{r['seed']:<6} " + "  ".join(f"{r[k]!s:>{len(k)}}" for k in keys))
    elif args.cmd == "scale":
        scale(args)
    else:
        _engine(args)


if __name__ == "__main__":
    main()
