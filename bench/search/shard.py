"""One blacklist shard's figures with the real index class (``callvet.voice.index.VectorIndex``), issue 17:
memory per print, build time, search latency p50/p99 at the blacklist's own k (64), one FAISS thread.

Prints come from ``ann.py``'s generator (a Gaussian speaker model fitted to the real voice-dev GE2E
embeddings through the shipped back end, 200-d; ``embed_corpus.py`` makes its cache), 2 prints per
synthetic speaker; queries are new calls of stored speakers. At each size both index kinds the
blacklist builds are measured in the same run: exact (``IndexFlatIP``, what it uses up to
``CALLVET_ANN_THRESHOLD``) and IVF-Flat (above it; ``nprobe`` tuned at build time to recall@1 >= 0.98).
Memory: the serialized index (what FAISS holds: vectors, ids, lists, the id map) and the process's
resident-set growth over the build.

    nice -n 5 .venv/bin/python bench/search/shard.py [--sizes 100000,1000000] [--out bench/search/SHARD.md]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import faiss
import numpy as np
from ann import CACHE, HERE, PrintGenerator, make_store
from callvet.core.settings import Settings
from callvet.voice.backend import Backend, backend_dir_for
from callvet.voice.index import VectorIndex, set_search_threads


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=64, help="the blacklist's search_k")
    ap.add_argument("--out", default=str(HERE / "SHARD.md"))
    args = ap.parse_args()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    backend = Backend.load(backend_dir_for(Settings().models_dir, "ge2e"))
    z = np.load(CACHE)
    gen = PrintGenerator(backend, z["emb"], z["speaker"])
    set_search_threads(1)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        x, _owner, q, _qs = make_store(gen, n, 2, args.queries, seed=1)
        ids = np.arange(1, n + 1, dtype=np.int64)
        for kind in ("exact", "ivf"):
            gc.collect()
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            index = VectorIndex.build(x.shape[1], ids, x, ann_threshold=n + 1 if kind == "exact" else 50_000)
            build_s = time.perf_counter() - t0
            rss = _rss_mb() - rss0
            size = int(faiss.serialize_index(index._index).nbytes)
            faiss.omp_set_num_threads(1)
            index.search(q[:1], args.k)
            lat = np.empty(len(q))
            for i in range(len(q)):
                t1 = time.perf_counter()
                index.search(q[i:i + 1], args.k)
                lat[i] = (time.perf_counter() - t1) * 1000
            rec = index.recall
            rows.append((n, index.kind, index.nprobe if index.kind == "ivf" else "", size / n, size / 2**20,
                         rss, build_s, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                         "" if rec is None else f"{rec.recall_at_1:.3f}"))
            print(rows[-1], flush=True)
            del index
        del x
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    lines = [
        "# One blacklist shard with the real index class (bench/search/shard.py, issue 17)",
        "",
        f"Machine: x86_64, 2 cores shared with other engineers' jobs (load average {' '.join(load0)} before, "
        f"{' '.join(load1)} after), faiss {faiss.__version__}, one FAISS thread per search (builds use "
        f"{os.cpu_count()}). 200-d prints (the shipped back end) from a speaker model fitted to the real "
        f"voice-dev GE2E embeddings, 2 per speaker; {args.queries} single queries (new calls of stored "
        f"speakers) at k = {args.k} (the blacklist's search_k). Build = `VectorIndex.build` (IVF: "
        "train, add, and the build-time recall measurement that tunes nprobe).",
        "",
        "| prints | kind | nprobe | bytes/print | index MB | RSS growth MB | build s | p50 ms | p99 ms | "
        "recall@1 (build probe) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, kind, nprobe, bpp, mb, rss, b, p50, p99, r1 in rows:
        lines.append(f"| {n:,} | {kind} | {nprobe} | {bpp:.0f} | {mb:.0f} | {rss:.0f} | {b:.1f} | "
                     f"{p50:.3f} | {p99:.3f} | {r1} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
