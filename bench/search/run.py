"""1:N voiceprint search: exact (IndexFlatIP) vs approximate (IVF-Flat) at 10^3 .. 10^6 prints.

Prints are random unit vectors of the engine's dimension; queries are stored prints plus noise to a
cosine of about 0.7 with their source (what a same-speaker probe looks like), searched one at a time as
the identify endpoint does. Recall@1 (the probe's source print found) and recall@5 (overlap with the
exact top 5) are measured against exact search in the same run, and latencies are reported as ratios.
Random unit vectors have no cluster structure, which is the worst case for IVF; real prints cluster by
speaker, so these recalls are a floor.

    nice .venv/bin/python bench/search/run.py [--sizes 1000,10000,100000,1000000] [--dim 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np
from callvet.voice.index import VectorIndex, set_search_threads

HERE = Path(__file__).resolve().parent


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for i in range(0, n, step):
        block = rng.standard_normal((min(step, n - i), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[i:i + len(block)] = block
    return out


def latencies(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(queries), k), dtype=np.int64)
    times = np.empty(len(queries))
    index.search(queries[0], k)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, found = index.search(q, k)
        times[i] = time.perf_counter() - t0
        ids[i] = found[0]
    return times * 1000, ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=256, help="GE2E prints are 256-d")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--target-recall", type=float, default=0.98)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads per search (service default 1)")
    ap.add_argument("--omp-size", type=int, default=10000, help="size at which all-core search is also timed")
    args = ap.parse_args()
    set_search_threads(args.threads)
    omp: tuple[int, int, float, float, float, float] | None = None
    rng = np.random.default_rng(0)
    rows = []
    t_all = time.perf_counter()
    for n in [int(s) for s in args.sizes.split(",")]:
        x = unit_rows(rng, n, args.dim)
        ids = np.arange(1, n + 1, dtype=np.int64)
        src = rng.choice(n, args.queries, replace=False)
        q = x[src] + rng.standard_normal((args.queries, args.dim), dtype=np.float32) / np.sqrt(args.dim)
        q /= np.linalg.norm(q, axis=1, keepdims=True)

        t0 = time.perf_counter()
        exact = VectorIndex.build(args.dim, ids, x, ann_threshold=n + 1)
        exact_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        approx = VectorIndex.build(args.dim, ids, x, ann_threshold=0, target_recall=args.target_recall)
        approx_build = time.perf_counter() - t0
        del x
        te, ie = latencies(exact, q, args.k)
        ta, ia = latencies(approx, q, args.k)
        r1 = float(np.mean(ia[:, 0] == ids[src]))
        r1_exact = float(np.mean(ie[:, 0] == ids[src]))
        rk = float(np.mean([len(set(a) & set(b)) / args.k
                            for a, b in zip(ia.tolist(), ie.tolist(), strict=True)]))
        row = {
            "n": n, "kind": approx.kind, "nprobe": approx.nprobe,
            "exact_p50": np.percentile(te, 50), "exact_p95": np.percentile(te, 95),
            "ivf_p50": np.percentile(ta, 50), "ivf_p95": np.percentile(ta, 95),
            "speedup": np.percentile(te, 50) / np.percentile(ta, 50),
            "recall1": r1, "recall1_exact": r1_exact, "recallk": rk,
            "build_recall1": approx.recall.recall_at_1 if approx.recall else float("nan"),
            "exact_build": exact_build, "ivf_build": approx_build,
        }
        rows.append(row)
        print(f"n={n:>8} exact p50 {row['exact_p50']:.3f} ms  ivf(nprobe={approx.nprobe}) p50 "
              f"{row['ivf_p50']:.3f} ms  speedup x{row['speedup']:.1f}  recall@1 {r1:.3f} "
              f"recall@{args.k} {rk:.3f}  build exact {exact_build:.1f}s ivf {approx_build:.1f}s", flush=True)
        if n == args.omp_size:
            set_search_threads(os.cpu_count() or 1)
            tm, _ = latencies(exact, q, args.k)
            set_search_threads(args.threads)
            omp = (n, os.cpu_count() or 1, np.percentile(tm, 50), np.percentile(tm, 95),
                   row["exact_p50"], row["exact_p95"])
            print(f"omp: exact n={n} {omp[1]} threads p50 {omp[2]:.3f} p95 {omp[3]:.3f} ms", flush=True)
        del exact, approx
    total = time.perf_counter() - t_all
    lines = [
        "# 1:N search: exact vs IVF (bench/search/run.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), faiss {faiss.__version__}, {args.threads} FAISS "
        f"thread(s) per search (as the service); dim {args.dim}; {args.queries} single-vector queries "
        f"per size (stored print + noise, cosine about 0.7 to its source); IVF nlist = sqrt(n), "
        f"nprobe doubled from 16 until "
        f"build-time recall@1 >= {args.target_recall}. Total run {total:.0f} s.",
        "",
        f"| prints | exact p50 ms | exact p95 ms | IVF nprobe | IVF p50 ms | IVF p95 ms | speed-up (p50) "
        f"| recall@1 IVF | recall@1 exact | recall@{args.k} IVF vs exact | build exact s | build IVF s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['exact_p50']:.3f} | {r['exact_p95']:.3f} | {r['nprobe']} "
            f"| {r['ivf_p50']:.3f} | {r['ivf_p95']:.3f} | x{r['speedup']:.1f} | {r['recall1']:.3f} "
            f"| {r['recall1_exact']:.3f} "
            f"| {r['recallk']:.3f} | {r['exact_build']:.1f} | {r['ivf_build']:.1f} |")
    lines += [
        "",
        "recall@1: fraction of probes whose source print is ranked first (the enrolled fraudster is found). "
        f"recall@{args.k}: overlap of the IVF top {args.k} with the exact top {args.k}; on random vectors "
        "ranks 2-5 are near-ties at noise level, so this understates what matters for alarms.",
        "The service uses exact search up to CALLVET_ANN_THRESHOLD (default 50,000) prints.",
        "",
    ]
    if omp is not None:
        lines += [
            f"Threads: exact search of {omp[0]:,} prints with {omp[1]} OpenMP threads took p50 "
            f"{omp[2]:.3f} ms / p95 {omp[3]:.3f} ms against p50 {omp[4]:.3f} / p95 {omp[5]:.3f} ms "
            f"with {args.threads} "
            f"(x{omp[2] / omp[4]:.1f} slower at p50) on this shared machine, hence CALLVET_FAISS_THREADS=1.",
            "",
        ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out} in {total:.0f} s")


if __name__ == "__main__":
    main()
