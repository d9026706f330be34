"""Approximate 1:N search at 10^6 call prints: HNSW, IVF with more lists, IVF-SQ8/PQ + exact re-rank,
against exact search (``IndexFlatIP``) measured in the same run, one FAISS thread per search.

Prints come from a generator fitted to real voice-dev embeddings (``embed_corpus.py`` caches the raw
GE2E embeddings of all 704 utterances, clean and phone channel): each embedding goes through the shipped
back end's first stage (NAP + WCCN + length-norm), a Gaussian speaker model is fitted there (speaker
means' covariance shrunk 10 % toward isotropic so 87 speakers give a full-rank model; within-speaker
covariance of the utterances of all speakers, both conditions), and a "call" is the back end's
``project_mean`` of three generated utterances of one speaker (about 10 s of speech), i.e. exactly the
200-d PLDA print the call-print store holds. The store holds ``--calls-per-speaker`` calls of each
synthetic speaker (fraud rings reuse voices); queries are new calls of stored speakers.

recall@1: the exact top-1 id is the approximate top-1. recall@5: overlap of the approximate top 5 with
the exact top 5. Both against exact search over the same prints.

    nice .venv/bin/python bench/search/ann.py [--n 1000000] [--queries 300] [--out bench/search/ANN.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from callvet.core.settings import Settings
from callvet.voice.backend import Backend, backend_dir_for

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "voice_dev_ge2e.npz"


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PrintGenerator:
    """Gaussian speaker model in the back end's normalised space, fitted to real embeddings."""

    def __init__(self, backend: Backend, emb: np.ndarray, speakers: np.ndarray, shrink: float = 0.1) -> None:
        self.backend = backend
        v = backend._stage1(emb).astype(np.float64)
        labels = np.unique(speakers)
        means = np.stack([v[speakers == s].mean(axis=0) for s in labels])
        resid = np.concatenate([v[speakers == s] - means[i] for i, s in enumerate(labels)])
        self.mu = means.mean(axis=0)
        b = np.cov(means, rowvar=False)
        d = b.shape[0]
        b = (1 - shrink) * b + shrink * np.trace(b) / d * np.eye(d)
        w = np.cov(resid, rowvar=False) + 1e-6 * np.eye(d)
        self.lb = np.linalg.cholesky(b)
        self.lw = np.linalg.cholesky(w)
        self.dim = backend.dim

    def speakers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mu + rng.standard_normal((n, len(self.mu))) @ self.lb.T

    def calls(self, rng: np.random.Generator, spk: np.ndarray, utts: int = 3) -> np.ndarray:
        """One call print per row of ``spk``: ``project_mean`` of ``utts`` generated utterances."""
        acc = np.zeros_like(spk)
        for _ in range(utts):
            acc += _l2(spk + rng.standard_normal(spk.shape) @ self.lw.T)
        return self.backend._stage2(_l2(acc / utts)).astype(np.float32)


def make_store(gen: PrintGenerator, n: int, per: int, queries: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_spk = (n + per - 1) // per
    x = np.empty((n, gen.dim), dtype=np.float32)
    owner = np.empty(n, dtype=np.int64)
    step = 50_000
    spk_all = []
    for i in range(0, n_spk, step):
        spk = gen.speakers(rng, min(step, n_spk - i))
        spk_all.append(spk.astype(np.float32))
        for j in range(per):
            rows = np.arange(i + 0, i + len(spk)) * per + j
            ok = rows < n
            x[rows[ok]] = gen.calls(rng, spk)[ok]
            owner[rows[ok]] = np.arange(i, i + len(spk))[ok]
    spk_arr = np.concatenate(spk_all)
    qs = rng.choice(n_spk, queries, replace=False)
    q = gen.calls(rng, spk_arr[qs].astype(np.float64))
    return x, owner, q, qs


def timed(search: Callable[[np.ndarray], np.ndarray], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    search(q[:1])
    ids = []
    times = np.empty(len(q))
    for i in range(len(q)):
        t0 = time.perf_counter()
        ids.append(search(q[i:i + 1])[0])
        times[i] = time.perf_counter() - t0
    return times * 1000, np.stack(ids)


def rerank_search(index: Any, x: np.ndarray, shortlist: int, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """Approximate shortlist from ``index`` then exact inner products on the stored float vectors."""

    def search(q: np.ndarray) -> np.ndarray:
        _, cand = index.search(q, shortlist)
        c = cand[0][cand[0] >= 0]
        s = x[c] @ q[0]
        order = np.argsort(-s)[:k]
        out = np.full(k, -1, dtype=np.int64)
        out[:len(order)] = c[order]
        return out[None, :]

    return search


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--calls-per-speaker", type=int, default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--cache", default=str(CACHE))
    ap.add_argument("--skip", default="", help="comma list of families to skip: hnsw,pq,sq8,ivf")
    ap.add_argument("--out", default=str(HERE / "ANN.md"))
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    t_all = time.perf_counter()
    settings = Settings()
    backend = Backend.load(backend_dir_for(settings.models_dir, "ge2e"))
    z = np.load(args.cache)
    gen = PrintGenerator(backend, z["emb"], z["speaker"])
    x, owner, q, qs = make_store(gen, args.n, args.calls_per_speaker, args.queries, seed=1)
    n, d, k = len(x), x.shape[1], args.k
    print(f"store {n} x {d} made in {time.perf_counter() - t_all:.0f} s", flush=True)
    build_threads = os.cpu_count() or 1

    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    te, ie = timed(lambda v: flat.search(v, k)[1], q)
    same = float(np.mean(owner[ie[:, 0]] == qs))
    print(f"exact p50 {np.percentile(te, 50):.2f} ms", flush=True)
    rows: list[dict[str, Any]] = []

    def measure(name: str, params: str, fn: Callable[[np.ndarray], np.ndarray], build_s: float,
                mem_mb: float) -> None:
        faiss.omp_set_num_threads(1)
        ta, ia = timed(fn, q)
        r1 = float(np.mean(ia[:, 0] == ie[:, 0]))
        rk = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ia.tolist(), ie.tolist(), strict=True)]))
        row = {"name": name, "params": params, "p50": np.percentile(ta, 50), "p95": np.percentile(ta, 95),
               "r1": r1, "rk": rk, "build_s": build_s, "mem_mb": mem_mb}
        rows.append(row)
        print(f"{name:<22} {params:<28} p50 {row['p50']:.3f} ms p95 {row['p95']:.3f} recall@1 {r1:.3f} "
              f"recall@{k} {rk:.3f} build {build_s:.0f}s", flush=True)

    rng = np.random.default_rng(2)
    train = x[np.sort(rng.choice(n, min(n, 256 * 1024), replace=False))]

    def build(factory: str, ntrain: int) -> tuple[Any, float]:
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        idx = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        if not idx.is_trained:
            idx.train(train[:ntrain])
        idx.add(x)
        return idx, time.perf_counter() - t0

    if "ivf" not in skip:
        nl = round(float(np.sqrt(n)))
        idx, bs = build(f"IVF{nl},Flat", nl * 40)
        for p in (64, 256):
            idx.nprobe = p
            measure("IVF-Flat sqrt(n)", f"nlist {nl} nprobe {p}", lambda v, i=idx: i.search(v, k)[1], bs,
                    n * d * 4 / 1e6)
        del idx
        for nl in (4096, 16384):
            idx, bs = build(f"IVF{nl},Flat", min(len(train), nl * 30))
            for p in (16, 32, 64, 128):
                idx.nprobe = p
                measure("IVF-Flat", f"nlist {nl} nprobe {p}", lambda v, i=idx: i.search(v, k)[1], bs,
                        n * d * 4 / 1e6)
            del idx
    if "sq8" not in skip:
        idx, bs = build("IVF4096,SQ8", 4096 * 30)
        for p, sl in ((32, 64), (64, 64), (64, 128), (128, 128)):
            idx.nprobe = p
            measure("IVF-SQ8 + re-rank", f"nlist 4096 nprobe {p} short {sl}",
                    rerank_search(idx, x, sl, k), bs, n * d / 1e6 + n * d * 4 / 1e6)
        del idx
    if "pq" not in skip:
        idx, bs = build("IVF4096,PQ50", 4096 * 30)
        for p, sl in ((64, 128), (64, 256), (128, 256)):
            idx.nprobe = p
            measure("IVF-PQ50 + re-rank", f"nlist 4096 nprobe {p} short {sl}",
                    rerank_search(idx, x, sl, k), bs, n * 50 / 1e6 + n * d * 4 / 1e6)
        del idx
    if "hnsw" not in skip:
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        idx = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = 80
        idx.add(x)
        bs = time.perf_counter() - t0
        for ef in (32, 64, 128, 256):
            idx.hnsw.efSearch = ef
            measure("HNSW-Flat", f"M 32 efSearch {ef}", lambda v, i=idx: i.search(v, k)[1], bs,
                    n * d * 4 / 1e6 + n * 32 * 2 * 4 / 1e6)
        del idx

    total = time.perf_counter() - t_all
    lines = [
        "# 1:N search at scale on realistic prints (bench/search/ann.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), faiss {faiss.__version__}, 1 FAISS thread per search "
        f"(builds use {build_threads}). {n:,} prints of {d} dimensions (the shipped PLDA back end's "
        f"print), {args.calls_per_speaker} calls per synthetic speaker, generated from a Gaussian speaker "
        f"model fitted to the real voice-dev GE2E embeddings ({len(z['emb'])} utterances, clean + phone); "
        f"{len(q)} single queries, each a new call of a stored speaker. Peer: exact search "
        f"(IndexFlatIP) in the same run, p50 {np.percentile(te, 50):.2f} ms / p95 "
        f"{np.percentile(te, 95):.2f} ms. Total run {total:.0f} s.",
        "",
        f"| index | parameters | p50 ms | p95 ms | x exact (p50) | recall@1 | recall@{k} | build s "
        "| memory MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| exact (peer) | IndexFlatIP | {np.percentile(te, 50):.3f} | {np.percentile(te, 95):.3f} | x1.0 "
        f"| 1.000 | 1.000 | 0 | {n * d * 4 / 1e6:.0f} |",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['params']} | {r['p50']:.3f} | {r['p95']:.3f} "
                     f"| x{np.percentile(te, 50) / r['p50']:.1f} | {r['r1']:.3f} | {r['rk']:.3f} "
                     f"| {r['build_s']:.0f} | {r['mem_mb']:.0f} |")
    lines += ["", f"Exact top-1 is a call of the query's own speaker for "
              f"{same:.3f} of queries.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out} in {total:.0f} s")


if __name__ == "__main__":
    main()
