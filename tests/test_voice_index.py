"""The FAISS index on random unit vectors: exact and IVF search, removal, persistence, integrity checks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from callvet.voice.index import INDEX_FILE, SIDECAR_FILE, IndexLoadError, VectorIndex, ids_checksum

DIM = 64


def unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_top(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(x @ q))[:k]]


def test_exact_search_matches_brute_force_and_ranks_best_first() -> None:
    x = unit(500)
    ids = np.arange(1000, 1500)
    idx = VectorIndex.build(DIM, ids, x)
    assert idx.kind == "exact" and len(idx) == 500
    q = unit(5, seed=1)
    scores, found = idx.search(q, 5)
    for row in range(5):
        assert found[row].tolist() == brute_top(x, ids, q[row], 5).tolist()
        assert np.all(np.diff(scores[row]) <= 1e-6)
    s, f = idx.search(x[7], 1)
    assert f[0, 0] == 1007 and s[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_add_remove_and_duplicates() -> None:
    idx = VectorIndex(DIM)
    s, f = idx.search(unit(1)[0], 3)
    assert f.tolist() == [[-1, -1, -1]] and np.all(np.isinf(s))
    x = unit(10, seed=2)
    idx.add(np.arange(10), x)
    with pytest.raises(ValueError, match="already"):
        idx.add([3], x[:1])
    with pytest.raises(ValueError, match="shape"):
        idx.add([99], np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        idx.add([99], np.full((1, DIM), np.nan, dtype=np.float32))
    assert 3 in idx and 10 not in idx and "3" not in idx
    assert idx.remove([3, 4, 12345]) == 2
    assert 3 not in idx and 5 in idx
    assert len(idx) == 8 and 3 not in idx.ids()
    _, f = idx.search(x[3], 8)
    assert 3 not in f[0] and 4 not in f[0]
    _, f = idx.search(x[5], 20)
    assert f[0, 0] == 5 and f[0, 8:].tolist() == [-1] * 12


def test_persist_roundtrip_and_sidecar(tmp_path: Path) -> None:
    x = unit(300, seed=3)
    ids = np.arange(1, 301)
    idx = VectorIndex.build(DIM, ids, x)
    idx.remove([10])
    meta = idx.save(tmp_path, backend_id="enc-a", generation=7)
    side = json.loads((tmp_path / SIDECAR_FILE).read_text())
    assert side["count"] == 299 and side["max_id"] == 300 and side["generation"] == 7
    assert side["backend_id"] == "enc-a" and side["ids_checksum"] == ids_checksum(np.delete(ids, 9))
    loaded, lmeta = VectorIndex.load(tmp_path)
    assert lmeta == meta and len(loaded) == 299
    q = unit(4, seed=4)
    assert np.array_equal(loaded.search(q, 5)[1], idx.search(q, 5)[1])
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_missing_torn_or_mismatched(tmp_path: Path) -> None:
    with pytest.raises(IndexLoadError, match="missing"):
        VectorIndex.load(tmp_path)
    idx = VectorIndex.build(DIM, np.arange(50), unit(50))
    idx.save(tmp_path, backend_id="b", generation=1)
    blob = (tmp_path / INDEX_FILE).read_bytes()
    (tmp_path / INDEX_FILE).write_bytes(blob[:-16])
    with pytest.raises(IndexLoadError, match="checksum"):
        VectorIndex.load(tmp_path)
    idx.save(tmp_path, backend_id="b", generation=1)
    side = json.loads((tmp_path / SIDECAR_FILE).read_text())
    side["ids_checksum"] = ids_checksum(np.arange(51))
    (tmp_path / SIDECAR_FILE).write_text(json.dumps(side))
    with pytest.raises(IndexLoadError, match="ids differ"):
        VectorIndex.load(tmp_path)
    (tmp_path / SIDECAR_FILE).write_text("{not json")
    with pytest.raises(IndexLoadError, match="sidecar"):
        VectorIndex.load(tmp_path)


def test_ivf_above_threshold_recall_checked_removal_and_persist(tmp_path: Path) -> None:
    n = 4000
    x = unit(n, seed=5)
    ids = np.arange(10_000, 10_000 + n)
    idx = VectorIndex.build(DIM, ids, x, ann_threshold=1000, nprobe=2, target_recall=0.97, recall_queries=150)
    assert idx.kind == "ivf" and len(idx) == n
    rep = idx.recall
    assert rep is not None and rep.queries == 150 and rep.k == 5
    assert rep.recall_at_1 >= 0.97 and 0.0 < rep.recall_at_k <= 1.0 and rep.nprobe >= 2
    exact = VectorIndex.build(DIM, ids, x)
    probes = x[:100] + np.random.default_rng(6).standard_normal((100, DIM)).astype(np.float32) / 8
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    hits = np.mean(idx.search(probes, 1)[1][:, 0] == exact.search(probes, 1)[1][:, 0])
    assert hits >= 0.9
    assert idx.remove(ids[:3]) == 3
    assert not set(ids[:3]) & set(idx.search(x[:3], 10)[1].ravel().tolist())
    idx.save(tmp_path, backend_id="b", generation=2)
    loaded, meta = VectorIndex.load(tmp_path)
    assert loaded.kind == "ivf" and meta.recall is not None and len(loaded) == n - 3
    assert np.array_equal(np.sort(loaded.ids()), np.sort(ids[3:]))
    assert loaded.search(x[50], 1)[1][0, 0] == ids[50]


def test_concurrent_add_remove_search() -> None:
    idx = VectorIndex(DIM)
    x = unit(400, seed=8)
    errors: list[BaseException] = []

    def writer(lo: int) -> None:
        try:
            for i in range(lo, lo + 100):
                idx.add([i], x[i])
                if i % 10 == 0:
                    idx.remove([i])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(200):
                idx.search(x[i % 400], 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(lo,)) for lo in (0, 100, 200, 300)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(idx) == 360 and len(idx.ids()) == 360
