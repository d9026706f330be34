"""Channel-robust scoring back end: NAP + WCCN projection, length-norm, then PLDA or cosine + AS-norm.

A raw GE2E cosine mixes who is speaking with how the line sounds; on phone speech the second dominates
(voice-dev: enrol clean, test phone, 17 % top-1). The back end is trained on development speakers in
clean and phone conditions plus simulated-channel copies (:mod:`callvet.voice.augment`), so the channel
becomes within-speaker variance:

1. centre on the training mean;
2. NAP: project out the top directions of the channel shift (an utterance's channel copy minus the
   utterance), which needs no speaker labels and keeps every other direction;
3. optional LDA to the speaker-discriminant subspace, then WCCN to whiten what is left of
   within-speaker (mostly channel) variance; length-normalise;
4. scoring, either
   - PLDA (two-covariance, ``plda_dim`` > 0; what ``train-backend`` ships): the cross term 2x'Py is an
     inner product of prints L'z (P = LL'), the quadratic terms x'Qx are per print and travel as its
     stats, so FAISS and the blacklist's stored (vector, stats) work unchanged; or
   - cosine + AS-norm: each print carries (mean, std) of its top-N scores against a cohort of
     development prints and a comparison is normalised from both sides;
5. the threshold is set from speaker-disjoint cross-validation on the training speakers for a target
   false-alarm rate per comparison (default 1 %).

Everything is stored as ``backend.npz`` + ``manifest.json`` under ``models/artifacts/backend/<encoder>/``,
keyed to the encoder's sha256: a back end trained on another encoder build is refused (the engine then
falls back to cosine), because its projection would be meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.artifacts import write_json_atomic

__all__ = [
    "RECOMMENDED_CONFIG",
    "Backend",
    "BackendConfig",
    "TrainingSet",
    "backend_dir_for",
    "find_backend",
    "fit_backend",
    "train_backend",
]

log = logging.getLogger(__name__)

NPZ_FILE = "backend.npz"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BackendConfig:
    """What the back end does; every step can be switched off (used for the per-step table)."""

    nap_dim: int = 16
    lda_dim: int = 0
    wccn: bool = True
    shrink: float = 0.1
    train_augmented: bool = True
    enrol_augment: bool = True
    asnorm_top_n: int = 100
    plda_dim: int = 0
    target_far: float = 0.01
    cohort_max: int = 3000


#: What ``callvet voiceprint train-backend`` trains by default: NAP-16 + WCCN, then PLDA in 200 dims
#: (best minDCF and open-set false alarms in speaker-disjoint CV on voice-dev, docs/voice.md).
#: ``BackendConfig()`` alone is the cosine + AS-norm back end.
RECOMMENDED_CONFIG = BackendConfig(plda_dim=200)


@dataclass
class TrainingSet:
    """Raw encoder embeddings of development speech.

    ``emb`` (n, d) one per utterance and condition, ``speaker`` (n,) labels, ``aug`` (n, k, d) the
    embeddings of k simulated-channel copies of each row (may be empty when k == 0).
    """

    emb: np.ndarray
    speaker: np.ndarray
    aug: np.ndarray

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.emb[mask], self.speaker[mask], self.aug[mask])


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class Backend:
    """A trained back end; immutable after loading, thread-safe."""

    mean: np.ndarray
    proj: np.ndarray
    cohort: np.ndarray
    threshold: float
    config: BackendConfig
    encoder_name: str
    encoder_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)
    plda: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.plda["lt"].shape[1]) if self.plda else int(self.proj.shape[1])

    @property
    def enrol_augment(self) -> bool:
        return self.config.enrol_augment

    @property
    def id(self) -> str:
        h = hashlib.sha256(self.proj.tobytes() + self.mean.tobytes() + self.cohort.tobytes()
                           + b"".join(self.plda[k].tobytes() for k in sorted(self.plda)))
        return f"{self.encoder_name}:{self.encoder_sha256[:12]}:bk-{h.hexdigest()[:12]}"

    def _stage1(self, emb: np.ndarray) -> np.ndarray:
        e = np.atleast_2d(np.asarray(emb, dtype=np.float32))
        return _l2((e - self.mean) @ self.proj)

    def _stage2(self, v: np.ndarray) -> np.ndarray:
        if not self.plda:
            return v
        return ((np.atleast_2d(v) - self.plda["mu"]) @ self.plda["v"] @ self.plda["lt"]).astype(np.float32)

    def project(self, emb: np.ndarray) -> np.ndarray:
        """Raw embeddings (n, d_in) -> prints (n, dim): unit length for the cosine back end; for PLDA
        the cross-term factor L'z (inner product = x'Py), not unit length."""
        return self._stage2(self._stage1(emb))

    def project_mean(self, emb: np.ndarray) -> np.ndarray:
        """One print from several raw embeddings of the same speaker (mean in the normalised space)."""
        return self._stage2(_l2(self._stage1(emb).mean(axis=0)))[0] if self.plda else (
            _l2(self._stage1(emb).mean(axis=0)))

    def cohort_stats(self, vectors: np.ndarray) -> Any:
        """(mean, std) of the top-N cohort scores; a tuple for one vector, an (n, 2) array for many."""
        v = np.asarray(vectors, dtype=np.float32)
        single = v.ndim == 1
        if self.plda:
            u = np.atleast_2d(v).astype(np.float64)
            q = np.einsum("ij,jk,ik->i", u, self.plda["qv"].astype(np.float64), u)
            stats = np.stack([-q, np.ones_like(q)], axis=1)
        else:
            stats = _top_n_stats(np.atleast_2d(v), self.cohort, self.config.asnorm_top_n)
        return (float(stats[0, 0]), float(stats[0, 1])) if single else stats

    def calibrate(self, raw: np.ndarray, probe_stats: tuple[float, float] | np.ndarray,
                  model_stats: np.ndarray) -> np.ndarray:
        """Symmetric AS-norm: 0.5 * (z-score against the model's cohort + against the probe's); for
        PLDA the log-likelihood ratio x'Qx + y'Qy + 2x'Py, whose per-print terms travel as stats (-q, 1)."""
        raw = np.asarray(raw, dtype=np.float64)
        ms = np.asarray(model_stats, dtype=np.float64).reshape(-1, 2)
        pm, ps = float(probe_stats[0]), float(probe_stats[1])
        if self.plda:
            return 2.0 * raw - pm - ms[:, 0]
        if self.config.asnorm_top_n <= 0:
            return raw
        return 0.5 * ((raw - ms[:, 0]) / ms[:, 1] + (raw - pm) / ps)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (NPZ_FILE + ".tmp.npz")
        np.savez_compressed(tmp, mean=self.mean, proj=self.proj, cohort=self.cohort.astype(np.float16),
                            **{f"plda_{k}": v for k, v in self.plda.items()})
        tmp.replace(directory / NPZ_FILE)
        manifest = {
            "kind": "voice_backend",
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "encoder": self.encoder_name,
            "encoder_sha256": self.encoder_sha256,
            "dim": self.dim,
            "input_dim": int(self.proj.shape[0]),
            "threshold": self.threshold,
            "config": asdict(self.config),
            "npz_sha256": hashlib.sha256((directory / NPZ_FILE).read_bytes()).hexdigest(),
            **self.meta,
        }
        write_json_atomic(directory / MANIFEST_FILE, manifest)
        return directory

    @classmethod
    def load(cls, directory: Path) -> Backend:
        from callvet.core.errors import Unavailable

        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            blob = (directory / NPZ_FILE).read_bytes()
            if hashlib.sha256(blob).hexdigest() != manifest["npz_sha256"]:
                raise ValueError("backend.npz does not match its manifest sha256")
            with np.load(directory / NPZ_FILE) as z:
                mean, proj, cohort = z["mean"], z["proj"], z["cohort"].astype(np.float32)
                plda = {k[5:]: z[k] for k in z.files if k.startswith("plda_")}
            cfg = BackendConfig(**manifest["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"voice back end at {directory} is unreadable: {exc}",
                              code="backend_corrupt") from exc
        known = set(BackendConfig.__dataclass_fields__) | {
            "kind", "format_version", "id", "encoder", "encoder_sha256", "dim", "input_dim", "threshold",
            "config", "npz_sha256"}
        meta = {k: v for k, v in manifest.items() if k not in known}
        return cls(mean, proj, cohort, float(manifest["threshold"]), cfg, manifest["encoder"],
                   manifest["encoder_sha256"], meta, plda)


def backend_dir_for(models_dir: Path, encoder_name: str) -> Path:
    return Path(models_dir) / "backend" / encoder_name


def _load_other(directory: Path) -> Any:
    """A back end stored in another layout than one ``backend.npz`` (the fused back end of
    :mod:`callvet.voice.fusion`, whose parts are ordinary back ends in subdirectories)."""
    from callvet.voice.fusion import FusedBackend

    return FusedBackend.load(directory)


def find_backend(encoder: Any, models_dir: Path) -> Any:
    """The back end trained for this exact encoder build (a :class:`Backend`, or a
    :class:`~callvet.voice.fusion.FusedBackend` for a fused encoder), or None (engine falls back to cosine).

    ``models_dir`` is either the models root (``<root>/backend/<encoder>``) or a back-end directory.
    """
    root = Path(models_dir)
    own = backend_dir_for(root, encoder.name)
    directory = root if (root / MANIFEST_FILE).is_file() and not (own / MANIFEST_FILE).is_file() else own
    if not (directory / MANIFEST_FILE).is_file():
        return None
    backend: Any = Backend.load(directory) if (directory / NPZ_FILE).is_file() else _load_other(directory)
    sha = str(encoder.manifest.get("sha256", ""))
    if backend.encoder_name != encoder.name or backend.encoder_sha256 != sha:
        log.warning("voice back end at %s was trained for %s:%s, not %s:%s; using plain cosine",
                    directory, backend.encoder_name, backend.encoder_sha256[:12], encoder.name, sha[:12])
        return None
    return backend


# -- training ------------------------------------------------------------------------------------
def _top_n_stats(v: np.ndarray, cohort: np.ndarray, top_n: int) -> np.ndarray:
    if top_n <= 0 or len(cohort) == 0:
        return np.tile(np.array([0.0, 1.0]), (len(v), 1))
    s = v @ cohort.T
    n = min(top_n, s.shape[1])
    top = np.partition(s, s.shape[1] - n, axis=1)[:, -n:]
    return np.stack([top.mean(axis=1), np.maximum(top.std(axis=1), 1e-3)], axis=1)


def _within_between(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = x.shape[1]
    sw = np.zeros((d, d))
    sb = np.zeros((d, d))
    mu = x.mean(axis=0)
    classes = np.unique(labels)
    for c in classes:
        xc = x[labels == c]
        mc = xc.mean(axis=0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mu, mc - mu)
    return sw / len(x), sb / len(x)


def _shrunk(s: np.ndarray, shrink: float) -> np.ndarray:
    d = s.shape[0]
    return (1 - shrink) * s + shrink * np.trace(s) / d * np.eye(d)


def fit_backend(
    data: TrainingSet,
    config: BackendConfig,
    *,
    encoder_name: str = "",
    encoder_sha256: str = "",
    threshold: float | None = None,
) -> Backend:
    """Fit the projection and cohort on ``data`` (threshold given, or 0 until calibrated)."""
    emb = data.emb.astype(np.float64)
    labels = data.speaker
    k = data.aug.shape[1] if data.aug.ndim == 3 else 0
    if config.train_augmented and k:
        x = np.concatenate([emb, data.aug.reshape(-1, emb.shape[1]).astype(np.float64)])
        y = np.concatenate([labels, np.repeat(labels, k)])
    else:
        x, y = emb, labels
    mean = x.mean(axis=0)
    xc = x - mean
    d = xc.shape[1]
    proj = np.eye(d)
    if config.nap_dim > 0 and k:
        diffs = (data.aug.astype(np.float64) - emb[:, None, :]).reshape(-1, d)
        _, _, vt = np.linalg.svd(diffs - diffs.mean(axis=0), full_matrices=False)
        u = vt[: config.nap_dim].T
        proj = proj - u @ u.T
    if config.lda_dim > 0:
        z = xc @ proj
        sw, sb = _within_between(z, y)
        from scipy.linalg import eigh

        vals, vecs = eigh(sb, _shrunk(sw, config.shrink) + 1e-9 * np.eye(d))
        n_dim = min(config.lda_dim, len(np.unique(y)) - 1, d)
        proj = proj @ vecs[:, np.argsort(vals)[::-1][:n_dim]]
    if config.wccn:
        z = _l2(xc @ proj).astype(np.float64)
        sw, _ = _within_between(z, y)
        w = np.linalg.inv(_shrunk(sw, config.shrink))
        proj = proj @ np.linalg.cholesky(w)
    proj = proj.astype(np.float32)
    backend = Backend(mean.astype(np.float32), proj, np.zeros((0, proj.shape[1]), np.float32),
                      float(threshold or 0.0), config, encoder_name, encoder_sha256)
    if config.plda_dim > 0:
        backend.plda = _fit_plda(backend._stage1(x), y, config.plda_dim)
        return backend
    cohort = backend.project(data.emb)
    if len(cohort) > config.cohort_max:
        rng = np.random.default_rng(0)
        cohort = cohort[np.sort(rng.choice(len(cohort), config.cohort_max, replace=False))]
    backend.cohort = cohort.astype(np.float16).astype(np.float32)
    return backend


def _fit_plda(x: np.ndarray, labels: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """Two-covariance PLDA (x = m + y + e, y ~ N(0, B), e ~ N(0, W)) in a PCA subspace.

    LLR(x, y) = x'Qx + y'Qy + 2x'Py with Q = T^-1 - (T - B T^-1 B)^-1, P = T^-1 B (T - B T^-1 B)^-1,
    T = B + W. P = L L' is factored so that the cross term is an inner product of prints L'z (FAISS);
    the quadratic terms are per print and are carried as its stats. Stored: mu, v (PCA), lt (= L),
    qv (Q expressed on prints: z = print @ L^-1, so q = print @ L^-1 Q L^-T @ print).
    """
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    k = max(1, min(dim, x.shape[1], len(x) - 1))
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    v = vt[:k].T
    w, b = _within_between((x - mu) @ v, labels)
    w, b = w + 1e-3 * np.eye(k), b + 1e-3 * np.eye(k)
    it = np.linalg.inv(b + w)
    m = np.linalg.inv(b + w - b @ it @ b)
    q = it - m
    p = it @ b @ m
    vals, vecs = np.linalg.eigh((p + p.T) / 2)
    vals = np.maximum(vals, 1e-9)
    lt = vecs * np.sqrt(vals)
    lt_inv = (vecs / np.sqrt(vals)).T
    qv = lt_inv @ q @ lt_inv.T
    qv = (qv + qv.T) / 2
    f32 = np.float32
    return {"mu": mu.astype(f32), "v": v.astype(f32), "lt": lt.astype(f32), "qv": qv.astype(f32)}


def speaker_folds(speakers: Sequence[str], k: int, seed: int = 0,
                  strata: dict[str, str] | None = None) -> list[np.ndarray]:
    """Speaker-disjoint folds (lists of speaker names), stratified by ``strata`` (e.g. family)."""
    uniq = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for s in uniq:
        groups.setdefault((strata or {}).get(s, ""), []).append(s)
    folds: list[list[str]] = [[] for _ in range(k)]
    i = 0
    for g in sorted(groups):
        members = list(groups[g])
        rng.shuffle(members)
        for s in members:
            folds[i % k].append(s)
            i += 1
    return [np.array(sorted(f)) for f in folds]


def impostor_scores(backend: Backend, data: TrainingSet, n_enrol: int = 3) -> np.ndarray:
    """AS-normed non-target scores among ``data``'s speakers: per speaker, a model from ``n_enrol``
    utterances against every other speaker's remaining utterances (the same shape as live use)."""
    models, probes, pspk, mspk = [], [], [], []
    for s in np.unique(data.speaker):
        idx = np.flatnonzero(data.speaker == s)
        if len(idx) <= n_enrol:
            continue
        enrol = idx[:n_enrol]
        raw = data.emb[enrol]
        if backend.enrol_augment and data.aug.ndim == 3 and data.aug.shape[1]:
            raw = np.concatenate([raw, data.aug[enrol].reshape(-1, raw.shape[1])])
        models.append(backend.project_mean(raw))
        mspk.append(s)
        probes.append(backend.project(data.emb[idx[n_enrol:]]))
        pspk += [s] * (len(idx) - n_enrol)
    if not models:
        return np.zeros(0)
    m = np.stack(models)
    ms = backend.cohort_stats(m)
    p = np.concatenate(probes)
    ps = backend.cohort_stats(p)
    raw_scores = p @ m.T
    out = []
    for i in range(len(p)):
        cal = backend.calibrate(raw_scores[i], ps[i], ms)
        out.append(cal[np.array(mspk) != pspk[i]])
    return np.concatenate(out)


def train_backend(
    data: TrainingSet,
    config: BackendConfig = BackendConfig(),
    *,
    encoder_name: str = "",
    encoder_sha256: str = "",
    folds: int = 4,
    strata: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Backend:
    """Fit on all speakers; set the threshold from speaker-disjoint CV impostor scores so that the
    expected false-alarm rate per comparison is ``config.target_far``."""
    fold_list = speaker_folds(list(data.speaker), folds, strata=strata)
    impostors = []
    for i, held in enumerate(fold_list):
        if progress:
            progress(f"calibration fold {i + 1}/{len(fold_list)}")
        test_mask = np.isin(data.speaker, held)
        b = fit_backend(data.subset(~test_mask), config)
        impostors.append(impostor_scores(b, data.subset(test_mask)))
    imp = np.concatenate(impostors)
    threshold = float(np.quantile(imp, 1 - config.target_far)) if len(imp) else 0.0
    backend = fit_backend(data, config, encoder_name=encoder_name, encoder_sha256=encoder_sha256,
                          threshold=threshold)
    backend.meta = {
        "n_speakers": len(np.unique(data.speaker)),
        "n_embeddings": len(data.emb),
        "n_augmented_per_embedding": int(data.aug.shape[1]) if data.aug.ndim == 3 else 0,
        "calibration_impostor_trials": len(imp),
    }
    return backend
