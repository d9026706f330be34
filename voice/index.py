"""FAISS inner-product index of voiceprints keyed by sample id, with atomic persistence and a sidecar.

Exact search (``IndexIDMap2(IndexFlatIP)``) is the default because a blacklist must not miss an enrolled
fraudster; beyond ``ann_threshold`` prints the index is built as IVF-Flat, which still supports true
``remove_ids`` (deleting a person's prints must physically remove the vectors, which HNSW cannot do).
An approximate index is only trusted once measured: at build time probes made from stored prints plus
noise (a same-speaker score of about 0.7) are searched exactly and approximately, and ``nprobe`` is
doubled until recall@1 of the probe's source print reaches ``target_recall``; recall@k is reported.

The sidecar JSON records what the index file holds (count, max id, SHA-256 of the sorted ids, the
encoder/back-end id, the database generation and the file's own SHA-256) so a loader can tell a missing,
torn, stale or foreign index from a good one and rebuild from the database instead of trusting it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from callvet.core.errors import CallvetError, InvalidArgument

__all__ = [
    "IndexLoadError",
    "IndexMeta",
    "RecallReport",
    "VectorIndex",
    "ids_checksum",
    "set_search_threads",
]

log = logging.getLogger(__name__)

FORMAT = 1
INDEX_FILE = "blacklist.faiss"
SIDECAR_FILE = "blacklist.json"


class IndexLoadError(CallvetError):
    """The persisted index is missing, torn, or does not match its sidecar; the caller rebuilds."""

    code = "index_unreadable"


def set_search_threads(n: int | None = None) -> int:
    """Set FAISS's OpenMP threads (process-wide); default ``CALLVET_FAISS_THREADS`` or 1.

    One thread per search is the right setting for a service: concurrent requests already use the
    cores, and on a loaded machine OpenMP's barrier waits multiply single-query latency, worst at the
    tail (bench/search/RESULTS.md compares both in the same run). Index builds raise it temporarily.
    """
    if n is None:
        from callvet.core.settings import env_value

        n = int(env_value("faiss_threads"))
    threads = n
    threads = max(1, threads)
    faiss.omp_set_num_threads(threads)
    return threads


def ids_checksum(ids: np.ndarray) -> str:
    """SHA-256 of the sorted ids as little-endian int64: equal sets give equal checksums."""
    arr = np.sort(np.asarray(ids, dtype="<i8").reshape(-1))
    return hashlib.sha256(arr.tobytes()).hexdigest()


@dataclass(frozen=True)
class RecallReport:
    """Approximate vs exact search measured when an approximate index is built."""

    k: int
    queries: int
    nprobe: int
    recall_at_1: float
    recall_at_k: float


@dataclass(frozen=True)
class IndexMeta:
    """The sidecar: what the index file holds and for which encoder/back end."""

    format: int
    backend_id: str
    dim: int
    kind: str
    count: int
    max_id: int
    ids_checksum: str
    generation: int
    file_sha256: str
    nprobe: int
    recall: dict[str, Any] | None
    saved_at: float


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InvalidArgument(f"vectors must have shape (n, {dim}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgument("vectors contain NaN or infinity")
    return x


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> str:
    """Write via ``write(tmp_path)`` to a temp file in the same directory, fsync, rename; return SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        digest = hashlib.sha256()
        with open(tmp, "rb+") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return digest.hexdigest()
    finally:
        tmp.unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class VectorIndex:
    """Thread-safe id-mapped inner-product index; ``kind`` is ``exact`` or ``ivf``."""

    def __init__(self, dim: int, *, _index: Any = None, _ids: np.ndarray | None = None,
                 kind: str = "exact", nprobe: int = 0, recall: RecallReport | None = None) -> None:
        if dim <= 0:
            raise InvalidArgument("dim must be positive")
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.recall = recall
        self._lock = threading.RLock()
        self._index = _index if _index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ids = np.sort(_ids) if _ids is not None else np.empty(0, dtype=np.int64)

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        dim: int,
        ids: np.ndarray | list[int],
        vectors: np.ndarray,
        *,
        ann_threshold: int = 50_000,
        nprobe: int = 16,
        target_recall: float = 0.98,
        recall_k: int = 5,
        recall_queries: int = 200,
        seed: int = 0,
        nlist: int | None = None,
    ) -> VectorIndex:
        """Exact below ``ann_threshold`` prints, IVF-Flat (nprobe tuned to ``target_recall``) above;
        ``nlist`` overrides the default sqrt(n) lists (the call-print store uses 4 sqrt(n), measured in
        bench/search/ANN.md)."""
        id_arr = _as_ids(ids)
        x = _as_matrix(vectors, dim) if len(id_arr) else np.empty((0, dim), dtype=np.float32)
        if len(id_arr) != len(x):
            raise InvalidArgument("ids and vectors differ in length")
        if len(np.unique(id_arr)) != len(id_arr):
            raise InvalidArgument("duplicate ids")
        n = len(id_arr)
        if n <= ann_threshold or n < 1000:
            idx = cls(dim)
            if n:
                idx._index.add_with_ids(x, id_arr)
                idx._ids = np.sort(id_arr)
            return idx
        return cls._build_ivf(dim, id_arr, x, nprobe=nprobe, target_recall=target_recall,
                              recall_k=recall_k, recall_queries=recall_queries, seed=seed, nlist=nlist)

    @classmethod
    def _build_ivf(cls, dim: int, ids: np.ndarray, x: np.ndarray, *, nprobe: int, target_recall: float,
                   recall_k: int, recall_queries: int, seed: int, nlist: int | None = None) -> VectorIndex:
        n = len(ids)
        rng = np.random.default_rng(seed)
        default = round(float(np.sqrt(n))) if nlist is None else nlist
        nlist = int(min(4096 if nlist is None else 65536, max(8, min(default, n // 39))))
        ntrain = min(n, nlist * 40)
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        t0 = time.perf_counter()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            ivf.train(x[np.sort(rng.choice(n, ntrain, replace=False))])
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            ivf.add_with_ids(x, ids)
        finally:
            faiss.omp_set_num_threads(threads)
        build_s = time.perf_counter() - t0

        nq = min(recall_queries, n)
        src = np.sort(rng.choice(n, nq, replace=False))
        probes = x[src] + rng.standard_normal((nq, dim)).astype(np.float32) * np.float32(1 / np.sqrt(dim))
        faiss.normalize_L2(probes)
        k = min(recall_k, n)
        _, exact = faiss.knn(probes, x, k, metric=faiss.METRIC_INNER_PRODUCT)
        exact_ids = ids[exact]
        probe = max(1, min(nprobe, nlist))
        while True:
            ivf.nprobe = probe
            _, approx = ivf.search(probes, k)
            r1 = float(np.mean(approx[:, 0] == exact_ids[:, 0]))
            rk = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                                for a, b in zip(approx, exact_ids, strict=True)]))
            if r1 >= target_recall or probe >= nlist:
                break
            probe = min(nlist, probe * 2)
        report = RecallReport(k=k, queries=nq, nprobe=probe, recall_at_1=r1, recall_at_k=rk)
        log.info("built IVF index: n=%d nlist=%d nprobe=%d recall@1=%.3f recall@%d=%.3f (%.1fs)",
                 n, nlist, probe, r1, k, rk, build_s)
        return cls(dim, _index=ivf, _ids=ids.copy(), kind="ivf", nprobe=probe, recall=report)

    # -- mutation and search ----------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        with self._lock:
            return self._ids.copy()

    def __contains__(self, id_: object) -> bool:
        if not isinstance(id_, int | np.integer):
            return False
        with self._lock:
            pos = int(np.searchsorted(self._ids, id_))
            return pos < len(self._ids) and int(self._ids[pos]) == int(id_)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        id_arr = _as_ids(ids)
        x = _as_matrix(vectors, self.dim)
        if len(id_arr) != len(x):
            raise InvalidArgument("ids and vectors differ in length")
        if len(np.unique(id_arr)) != len(id_arr):
            raise InvalidArgument("duplicate ids")
        with self._lock:
            if len(self._ids) and np.isin(id_arr, self._ids).any():
                raise InvalidArgument("some ids are already in the index")
            self._index.add_with_ids(x, id_arr)
            self._ids = np.sort(np.concatenate([self._ids, id_arr]))

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Remove these ids (absent ones are ignored); returns how many vectors were removed."""
        id_arr = _as_ids(ids)
        if not len(id_arr):
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(id_arr))
            self._ids = np.setdiff1d(self._ids, id_arr, assume_unique=False)
            return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query, best first; missing slots have id -1 and score -inf."""
        q = _as_matrix(queries, self.dim)
        if k <= 0:
            raise InvalidArgument("k must be positive")
        with self._lock:
            n = int(self._index.ntotal)
            if n == 0:
                return (np.full((len(q), k), -np.inf, dtype=np.float32),
                        np.full((len(q), k), -1, dtype=np.int64))
            if self.kind == "ivf":
                self._index.nprobe = self.nprobe
            scores, ids = self._index.search(q, min(k, n))
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    def reconstruct(self, id_: int) -> np.ndarray:
        with self._lock:
            return np.asarray(self._index.reconstruct(int(id_)), dtype=np.float32)

    # -- persistence --------------------------------------------------------------------------------------

    def save(self, directory: Path, *, backend_id: str, generation: int) -> IndexMeta:
        """Write index then sidecar atomically; a crash between the two leaves a detectable mismatch."""
        directory = Path(directory)
        with self._lock:
            ids = self._ids.copy()
            file_sha = _atomic_write(directory / INDEX_FILE,
                                     lambda tmp: faiss.write_index(self._index, str(tmp)))
            meta = IndexMeta(
                format=FORMAT, backend_id=backend_id, dim=self.dim, kind=self.kind, count=len(ids),
                max_id=int(ids.max()) if len(ids) else 0, ids_checksum=ids_checksum(ids),
                generation=int(generation), file_sha256=file_sha, nprobe=self.nprobe,
                recall=asdict(self.recall) if self.recall else None, saved_at=time.time(),
            )
            body = json.dumps(asdict(meta), indent=2, sort_keys=True).encode()
            _atomic_write(directory / SIDECAR_FILE, lambda tmp: tmp.write_bytes(body))
        return meta

    @classmethod
    def load(cls, directory: Path) -> tuple[VectorIndex, IndexMeta]:
        """Load and verify against the sidecar; raises :class:`IndexLoadError` on any mismatch."""
        directory = Path(directory)
        index_path, sidecar_path = directory / INDEX_FILE, directory / SIDECAR_FILE
        if not index_path.exists() or not sidecar_path.exists():
            raise IndexLoadError("index or sidecar missing")
        try:
            raw = json.loads(sidecar_path.read_text())
            meta = IndexMeta(**raw)
        except (ValueError, TypeError) as exc:
            raise IndexLoadError(f"unreadable sidecar: {exc}") from exc
        if meta.format != FORMAT:
            raise IndexLoadError(f"sidecar format {meta.format} != {FORMAT}")
        if _file_sha256(index_path) != meta.file_sha256:
            raise IndexLoadError("index file does not match its sidecar checksum")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as exc:
            raise IndexLoadError(f"unreadable index: {exc}") from exc
        if index.d != meta.dim or index.ntotal != meta.count:
            raise IndexLoadError("index dimension or size differs from its sidecar")
        if meta.kind == "exact":
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        else:
            ids = _ivf_ids(index)
        if ids_checksum(ids) != meta.ids_checksum:
            raise IndexLoadError("index ids differ from its sidecar")
        recall = RecallReport(**meta.recall) if meta.recall else None
        return cls(meta.dim, _index=index, _ids=ids, kind=meta.kind, nprobe=meta.nprobe,
                   recall=recall), meta


def _ivf_ids(index: Any) -> np.ndarray:
    invlists = index.invlists
    parts = []
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size:
            ptr = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64).copy())
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
