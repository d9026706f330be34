"""Two speaker encoders as one voiceprint: a composite encoder and a score-fusion back end (issue 18).

GE2E and SE-Res2Net50 err on different voices (bench/voice/ENCODERS.md: raw phone-channel EER 8.5 % and
7.0 %, their mean cosine 6.0 %), so the served print carries both:

* :class:`FusedEncoder` is an encoder like :class:`~callvet.voice.encoder.OnnxEncoder` (same ``embed``
  / ``embed_partials``), whose embedding is the concatenation of each part's unit-length embedding over
  ``sqrt(parts)``. Its window embeddings follow the finest part's window grid; each row carries the
  other part's window that covers the same share of the speech, so the mean over any prefix of rows
  (what a live call's :class:`~callvet.voice.engine.Accumulator` takes) is the concatenation of both
  parts' means over about the same speech.
* :class:`FusedBackend` is a back end like :class:`~callvet.voice.backend.Backend`: one PLDA back end
  per part, fitted on that part alone, and a weighted sum of their log-likelihood ratios. A PLDA LLR is
  ``2 x'Py - q(x) - q(y)``, so the weighted sum is again an inner product of one vector per print
  (each part's print times ``sqrt(weight)``, concatenated) plus per-print terms (the weighted sum of
  the parts' ``q``): one FAISS index, one stored (vector, stats) per print, unchanged blacklist code.

Prints of the fused back end have another ``backend_id`` than the GE2E-only prints; a stored GE2E print
cannot become a fused one (the Res2Net half needs the audio, which is never kept), so the blacklist
reports old prints as needing re-enrolment from the original recordings (docs/blacklist.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.artifacts import write_json_atomic
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.backend import (
    MANIFEST_FILE,
    Backend,
    BackendConfig,
    TrainingSet,
    fit_backend,
    impostor_scores,
    speaker_folds,
)

__all__ = [
    "FUSED_KIND",
    "FusedBackend",
    "FusedEncoder",
    "backend_fitter",
    "fuse_embeddings",
    "fuse_partials",
    "fused_training_set",
    "is_fused_name",
    "train_for_encoder",
    "train_fused_backend",
]

FUSED_KIND = "voice_backend_fusion"
FORMAT_VERSION = 1
_SEP = "+"


def is_fused_name(name: str) -> bool:
    return _SEP in name


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def fuse_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Per-part embeddings (..., d_k) -> the fused embedding (..., sum d_k): each part unit length,
    the whole over sqrt(parts), so the fused vector is unit length too."""
    scale = 1.0 / math.sqrt(len(parts))
    out = np.concatenate([_l2(np.asarray(p, np.float32)) for p in parts], axis=-1) * scale
    return out.astype(np.float32)


def fuse_partials(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Per-part window embeddings (n_k, d_k) of the same speech -> fused rows on the finest grid.

    Row i of the finest part is paired with row ``floor(i * n_k / n)`` of every other part, the window
    that covers the same share of the speech; a function of the counts only, so it gives the same rows
    from cached window embeddings (benches) as from the encoders (serving)."""
    n = max(len(p) for p in parts)
    if n == 0 or any(len(p) == 0 for p in parts):
        raise InvalidInput("every encoder must give at least one window embedding", code="empty")
    rows = [np.asarray(p, np.float32)[np.minimum((np.arange(n) * len(p)) // n, len(p) - 1)] for p in parts]
    return fuse_embeddings(rows)


class FusedEncoder:
    """Several loaded encoders behind the one-encoder interface the engine uses (thread-safe as they are)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        if len(parts) < 2:
            raise InvalidInput("a fused encoder needs at least two encoders", code="bad_encoder_name")
        rates = {int(p.sample_rate) for p in parts}
        if len(rates) != 1:
            raise InvalidInput(f"encoders run at different sample rates {sorted(rates)}",
                               code="bad_encoder_name")
        self.parts = list(parts)
        self.name = _SEP.join(p.name for p in self.parts)
        self.dims = [int(p.dim) for p in self.parts]
        self.dim = sum(self.dims)
        self.sample_rate = rates.pop()
        described = [{"name": p.name, "sha256": str(p.manifest.get("sha256", "")),
                      "embedding_size": int(p.dim)} for p in self.parts]
        key = "|".join(f"{d['name']}:{d['sha256']}" for d in described)
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.manifest: dict[str, Any] = {
            "name": self.name, "kind": "speaker_encoder_fusion", "sha256": digest, "parts": described,
            "embedding_size": self.dim, "sample_rate": self.sample_rate,
            "frontend": {"type": "fused",
                         "parts": [p.manifest.get("frontend", {}).get("type") for p in self.parts]},
        }

    def __repr__(self) -> str:
        return f"FusedEncoder(name={self.name!r}, dim={self.dim})"

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        return fuse_embeddings([p.embed(wav16k) for p in self.parts])

    def embed_partials(self, wav16k: np.ndarray) -> np.ndarray:
        return fuse_partials([p.embed_partials(wav16k) for p in self.parts])


def load_fused_encoder(models_dir: Path, name: str, loader: Callable[..., Any], **kw: Any) -> FusedEncoder:
    """``ge2e+res2net`` -> a :class:`FusedEncoder` of the encoders ``loader`` loads under ``models_dir``."""
    names = name.split(_SEP)
    if len(names) != len(set(names)) or any(not n or is_fused_name(n) for n in names):
        raise InvalidInput(f"bad fused encoder name {name!r}", code="bad_encoder_name")
    return FusedEncoder([loader(models_dir, n, **kw) for n in names])


@dataclass
class FusedBackend:
    """Weighted sum of per-part PLDA log-likelihood ratios, as one print space (see the module doc)."""

    parts: list[Backend]
    weights: list[float]
    threshold: float
    encoder_name: str
    encoder_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.weights) or len(self.parts) < 2:
            raise ValueError("a fused back end needs one weight per part and at least two parts")
        if any(not p.plda for p in self.parts):
            raise ValueError("score fusion as one inner product needs PLDA parts")
        self.in_dims = [int(p.proj.shape[0]) for p in self.parts]
        self.out_dims = [p.dim for p in self.parts]
        self._scale = [math.sqrt(float(w)) for w in self.weights]

    @property
    def dim(self) -> int:
        return sum(self.out_dims)

    @property
    def enrol_augment(self) -> bool:
        return all(p.enrol_augment for p in self.parts)

    @property
    def config(self) -> BackendConfig:
        return self.parts[0].config

    @property
    def plda(self) -> dict[str, np.ndarray]:
        return self.parts[0].plda

    @property
    def id(self) -> str:
        key = "|".join(p.id for p in self.parts) + "|" + ",".join(f"{w:.6f}" for w in self.weights)
        h = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.encoder_name}:{self.encoder_sha256[:12]}:fu-{h[:12]}"

    def _split(self, x: np.ndarray, dims: Sequence[int]) -> list[np.ndarray]:
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if x.shape[1] != sum(dims):
            raise InvalidInput(f"fused back end takes {sum(dims)}-d input, got {x.shape[1]}", code="bad_dim")
        return np.split(x, np.cumsum(dims)[:-1], axis=1)

    def project(self, emb: np.ndarray) -> np.ndarray:
        parts = zip(self.parts, self._split(emb, self.in_dims), self._scale, strict=True)
        return np.concatenate([b.project(_l2(e)) * s for b, e, s in parts], axis=1)

    def project_mean(self, emb: np.ndarray) -> np.ndarray:
        parts = zip(self.parts, self._split(emb, self.in_dims), self._scale, strict=True)
        return np.concatenate([b.project_mean(_l2(e)) * s for b, e, s in parts])

    def cohort_stats(self, vectors: np.ndarray) -> Any:
        v = np.asarray(vectors, dtype=np.float32)
        single = v.ndim == 1
        total = np.zeros(len(np.atleast_2d(v)))
        parts = zip(self.parts, self._split(v, self.out_dims), self._scale, self.weights, strict=True)
        for b, part, s, w in parts:
            total += float(w) * np.asarray(b.cohort_stats(part / s), dtype=np.float64).reshape(-1, 2)[:, 0]
        stats = np.stack([total, np.ones_like(total)], axis=1)
        return (float(stats[0, 0]), 1.0) if single else stats

    def calibrate(self, raw: np.ndarray, probe_stats: tuple[float, float] | np.ndarray,
                  model_stats: np.ndarray) -> np.ndarray:
        ms = np.asarray(model_stats, dtype=np.float64).reshape(-1, 2)
        return 2.0 * np.asarray(raw, dtype=np.float64) - float(probe_stats[0]) - ms[:, 0]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(self.parts):
            b.save(directory / f"part-{i}")
        manifest = {
            "kind": FUSED_KIND, "format_version": FORMAT_VERSION, "id": self.id, "encoder": self.encoder_name,
            "encoder_sha256": self.encoder_sha256, "dim": self.dim, "input_dim": sum(self.in_dims),
            "threshold": self.threshold, "weights": self.weights,
            "parts": [{"dir": f"part-{i}", "id": b.id, "encoder": b.encoder_name}
                      for i, b in enumerate(self.parts)],
            **self.meta,
        }
        write_json_atomic(directory / MANIFEST_FILE, manifest)
        return directory

    @classmethod
    def load(cls, directory: Path) -> FusedBackend:
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            if manifest.get("kind") != FUSED_KIND:
                raise ValueError(f"not a fused back end (kind {manifest.get('kind')!r})")
            parts = [Backend.load(directory / p["dir"]) for p in manifest["parts"]]
            for p, want in zip(parts, manifest["parts"], strict=True):
                if p.id != want["id"]:
                    raise ValueError(f"{want['dir']} is {p.id}, the manifest lists {want['id']}")
            known = {"kind", "format_version", "id", "encoder", "encoder_sha256", "dim", "input_dim",
                     "threshold", "weights", "parts"}
            out = cls(parts, [float(w) for w in manifest["weights"]], float(manifest["threshold"]),
                      manifest["encoder"], manifest["encoder_sha256"],
                      {k: v for k, v in manifest.items() if k not in known})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"fused voice back end at {directory} is unreadable: {exc}",
                              code="backend_corrupt") from exc
        if out.id != manifest["id"]:
            raise Unavailable(f"fused voice back end at {directory}: id {out.id} does not match its manifest",
                              code="backend_corrupt")
        return out


def fused_training_set(parts: Sequence[TrainingSet]) -> TrainingSet:
    """Per-encoder training sets of the same utterances (same rows) -> one set of fused embeddings."""
    first = parts[0]
    for p in parts[1:]:
        if not np.array_equal(p.speaker, first.speaker) or p.aug.shape[:2] != first.aug.shape[:2]:
            raise ValueError("the encoders' training sets do not describe the same utterances")
    aug = fuse_embeddings([p.aug for p in parts]) if first.aug.shape[1] else np.zeros(
        (len(first.emb), 0, sum(p.emb.shape[1] for p in parts)), np.float32)
    return TrainingSet(fuse_embeddings([p.emb for p in parts]), first.speaker, aug)


def fit_fused_backend(data: TrainingSet, dims: Sequence[int], config: BackendConfig, weights: Sequence[float],
                      *, encoder_name: str = "", encoder_sha256: str = "",
                      part_encoders: Sequence[tuple[str, str]] = (),
                      threshold: float | None = None) -> FusedBackend:
    """One PLDA back end per part of the fused embeddings in ``data``, fitted on that part alone."""
    edges = np.cumsum([0, *dims])
    parts = []
    for i in range(len(dims)):
        sl = slice(int(edges[i]), int(edges[i + 1]))
        sub = TrainingSet(_l2(data.emb[:, sl]), data.speaker,
                          _l2(data.aug[:, :, sl]) if data.aug.shape[1] else data.aug[:, :, sl])
        name, sha = part_encoders[i] if part_encoders else ("", "")
        parts.append(fit_backend(sub, config, encoder_name=name, encoder_sha256=sha))
    return FusedBackend(parts, [float(w) for w in weights], float(threshold or 0.0), encoder_name,
                        encoder_sha256)


def train_fused_backend(data: TrainingSet, dims: Sequence[int], config: BackendConfig,
                        weights: Sequence[float], *, encoder_name: str = "", encoder_sha256: str = "",
                        part_encoders: Sequence[tuple[str, str]] = (), folds: int = 4,
                        strata: dict[str, str] | None = None,
                        progress: Callable[[str], None] | None = None) -> FusedBackend:
    """As :func:`~callvet.voice.backend.train_backend`: the per-comparison threshold (used without an
    open-set calibration) from speaker-disjoint cross-validation, then a fit on every speaker."""
    impostors = []
    for i, held in enumerate(speaker_folds(list(data.speaker), folds, strata=strata)):
        if progress:
            progress(f"calibration fold {i + 1}/{folds}")
        test = np.isin(data.speaker, held)
        b = fit_fused_backend(data.subset(~test), dims, config, weights)
        impostors.append(impostor_scores(b, data.subset(test)))  # type: ignore[arg-type]
    imp = np.concatenate(impostors)
    threshold = float(np.quantile(imp, 1 - config.target_far)) if len(imp) else 0.0
    backend = fit_fused_backend(data, dims, config, weights, encoder_name=encoder_name,
                                encoder_sha256=encoder_sha256, part_encoders=part_encoders,
                                threshold=threshold)
    backend.meta = {"n_speakers": len(np.unique(data.speaker)), "n_embeddings": len(data.emb),
                    "n_augmented_per_embedding": int(data.aug.shape[1]),
                    "calibration_impostor_trials": len(imp)}
    return backend


def backend_fitter(encoder: Any, config: BackendConfig,
                   weights: Sequence[float] | None = None) -> Callable[[TrainingSet], Any]:
    """How to fit a back end on ``encoder``'s embeddings (the inner folds of the open-set calibration
    fit one per fold): the plain recipe for one encoder, per-part PLDA + LLR sum for a fused one."""
    if not hasattr(encoder, "parts"):
        return lambda data: fit_backend(data, config)
    dims = list(encoder.dims)
    w = list(weights) if weights is not None else [1.0 / len(dims)] * len(dims)
    return lambda data: fit_fused_backend(data, dims, config, w)


def train_for_encoder(encoder: Any, data: TrainingSet, config: BackendConfig, **kw: Any) -> Any:
    """``train_backend`` for one encoder, :func:`train_fused_backend` (equal weights) for a fused one."""
    from callvet.voice.backend import train_backend

    sha = str(encoder.manifest.get("sha256", ""))
    if not hasattr(encoder, "parts"):
        return train_backend(data, config, encoder_name=encoder.name, encoder_sha256=sha, **kw)
    n = len(encoder.parts)
    parts = [(p.name, str(p.manifest.get("sha256", ""))) for p in encoder.parts]
    return train_fused_backend(data, encoder.dims, config, [1.0 / n] * n, encoder_name=encoder.name,
                               encoder_sha256=sha, part_encoders=parts, **kw)
