"""One calibrated spoof score per request and per call.

The back end (``models/artifacts/backend/spoof/cm.npz``, made by ``callvet spoof train`` and shipped
like the voiceprint back end) scores the :mod:`~callvet.voice.spoof.cues` vector of the latest 4.04 s of
net speech with two logistic regressions (synthetic vs bona fide, replay vs bona fide), each Platt-
calibrated to a log-likelihood ratio; the score is the larger of the two and ``kind`` says which. The
flag threshold is the quantile of *out-of-fold* genuine callers' scores that gives the configured
false-flag rate (``CALLVET_SPOOF_FFR``, default 1 %); ``kind`` is only set on a flagged score.

AASIST (``_Aasist``, ONNX) is still exported by ``callvet models build`` and measured beside the cues,
but the shipped back end does not use it: on held-out synthesisers through a phone line it is at chance
(docs/spoof.md) and it cost 3-9x the voiceprint per second of speech. Serving needs numpy only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.audio import resample
from callvet.voice.spoof.cues import CUE_NAMES, cues

__all__ = ["BACKEND_DIR", "DEFAULT_FFR", "SpoofDetector", "SpoofResult", "SpoofWatch", "aasist_input",
           "backend_dir", "load_detector"]

DEFAULT_FFR = 0.01
NB_SAMP = 64600
MAX_WINDOWS = 1
#: Where the trained back end lives under a models directory (committed, like backend/ge2e).
BACKEND_DIR = Path("backend") / "spoof"
_SR = 16000
_MIN_SAMPLES = _SR // 2
_KINDS = ("synthetic", "replay")


def backend_dir(models_dir: Path) -> Path:
    return Path(models_dir) / BACKEND_DIR


def aasist_input(x16k: np.ndarray) -> np.ndarray:
    """(windows, 64600) AASIST inputs: peak-normalised as upstream, short speech tiled, long speech cut
    into consecutive windows (at most :data:`MAX_WINDOWS`, the latest kept)."""
    x = np.asarray(x16k, dtype=np.float32).reshape(-1)
    x = x / (float(np.max(np.abs(x))) + 1e-10)
    if len(x) <= NB_SAMP:
        return np.tile(x, NB_SAMP // max(len(x), 1) + 1)[:NB_SAMP][None, :].astype(np.float32)
    n = min(MAX_WINDOWS, len(x) // NB_SAMP)
    x = x[len(x) - n * NB_SAMP:]
    return x.reshape(n, NB_SAMP).astype(np.float32)


@dataclass(frozen=True)
class SpoofResult:
    score: float
    flag: bool
    kind: str | None
    threshold: float
    components: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "flag": self.flag, "kind": self.kind}


class _Aasist:
    """AASIST's ONNX export (checked against its manifest); a measured peer, not in the served score."""

    def __init__(self, directory: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        path = directory / "manifest.json"
        if not path.is_file():
            raise Unavailable(f"AASIST is not built at {directory}; run `callvet models build`",
                              code="spoof_missing")
        manifest = json.loads(path.read_text())
        for name, digest in manifest.get("files", {}).items():
            f = directory / name
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise Unavailable(f"AASIST {name} is missing or does not match its manifest; run "
                                  "`callvet models build --force`", code="spoof_corrupt")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.manifest = manifest
        self.session = ort.InferenceSession(str(directory / manifest["model_file"]), opts,
                                            providers=["CPUExecutionProvider"])

    def logits(self, windows: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"waveform": np.ascontiguousarray(windows, np.float32)})[0]

    def score(self, x16k: np.ndarray) -> float:
        """Mean over windows of logit(spoof) - logit(bona fide)."""
        lg = self.logits(aasist_input(x16k))
        return float(np.mean(lg[:, 0] - lg[:, 1]))


class SpoofDetector:
    """Cue vector + per-kind calibrated regressions; stateless after construction (thread-safe)."""

    def __init__(self, cm: dict[str, np.ndarray], *, ffr: float = DEFAULT_FFR) -> None:
        if not 0.0 < ffr < 0.5:
            raise InvalidInput("CALLVET_SPOOF_FFR must be in (0, 0.5)", code="bad_setting")
        names = tuple(str(v) for v in cm["feature_names"])
        if names != CUE_NAMES:
            raise Unavailable("the spoof back end was trained on other cues than this code computes; "
                              "run `callvet spoof train`", code="spoof_stale")
        self.cols = np.asarray(cm["cols"], bool)
        self.mean = cm["mean"].astype(np.float64)
        self.scale = cm["scale"].astype(np.float64)
        self.w = np.stack([cm[f"w_{k}"] for k in _KINDS]).astype(np.float64)
        self.b = np.asarray([float(cm[f"b_{k}"]) for k in _KINDS])
        self.cal = np.asarray(cm["cal"], np.float64)
        self.bona_scores = np.sort(cm["bona_scores"].astype(np.float64))
        self.meta = json.loads(str(cm["meta"]))
        self.ffr = float(ffr)
        self.threshold = float(np.quantile(self.bona_scores, 1.0 - self.ffr))

    def describe(self) -> dict[str, Any]:
        return {"ffr": self.ffr, "threshold": round(self.threshold, 4),
                "trained_on": self.meta.get("trained_on")}

    def components(self, x16k: np.ndarray) -> np.ndarray:
        """The cue vector of the latest 4.04 s of a stretch of net speech at 16 kHz."""
        x = np.asarray(x16k, dtype=np.float32).reshape(-1)
        if len(x) < _MIN_SAMPLES:
            raise InvalidInput("too little speech for a spoof score (0.5 s needed)", code="too_little_speech")
        if not np.all(np.isfinite(x)):
            raise InvalidInput("audio contains NaN or infinite samples", code="nan")
        return cues(resample(x[-MAX_WINDOWS * NB_SAMP:], _SR, 8000))

    def llrs(self, comps: np.ndarray) -> np.ndarray:
        """Calibrated per-kind LLRs (synthetic, replay) of a cue vector."""
        z = (np.asarray(comps, np.float64)[self.cols] - self.mean) / self.scale
        raw = self.w @ z + self.b
        return raw * self.cal[:, 0] + self.cal[:, 1]

    def decide(self, comps: np.ndarray) -> SpoofResult:
        llr = self.llrs(comps)
        j = int(np.argmax(llr))
        score = float(llr[j])
        flag = score > self.threshold
        return SpoofResult(score, bool(flag), _KINDS[j] if flag else None, self.threshold,
                           {"synthetic_llr": float(llr[0]), "replay_llr": float(llr[1])})

    def score(self, x16k: np.ndarray) -> SpoofResult:
        return self.decide(self.components(x16k))

    def watch(self) -> SpoofWatch:
        return SpoofWatch(self)


class SpoofWatch:
    """A live call's spoof state: the latest 4.04 s of speech, scored at each voiceprint check.

    Only the newest :data:`NB_SAMP` samples are kept (bounded memory); each check computes that
    window's cue vector once and the call's result is the decision on the mean vector over all checks
    so far, so cost is one window per check (the voiceprint's stride), never per frame.
    """

    def __init__(self, detector: SpoofDetector) -> None:
        self.detector = detector
        self._ring = np.zeros(0, np.float32)
        self._new = 0
        self._sum: np.ndarray | None = None
        self._n = 0
        self.checks = 0
        self._lock = threading.Lock()
        self.last: SpoofResult | None = None

    def add(self, speech16k: np.ndarray) -> None:
        x = np.asarray(speech16k, dtype=np.float32).reshape(-1)
        with self._lock:
            self._ring = np.concatenate([self._ring, x])[-NB_SAMP:]
            self._new += len(x)

    def check(self) -> SpoofResult | None:
        with self._lock:
            if self._new == 0 or len(self._ring) < _MIN_SAMPLES:
                return self.last
            window, self._new = self._ring.copy(), 0
        comps = self.detector.components(window)
        with self._lock:
            self.checks += 1
            self._sum = comps if self._sum is None else self._sum + comps
            self._n += 1
            self.last = self.detector.decide(self._sum / self._n)
            return self.last


_cache: dict[tuple[str, float], SpoofDetector] = {}
_cache_lock = threading.Lock()


def read_backend(directory: Path) -> dict[str, np.ndarray]:
    """The back end's arrays, checked against its manifest (sha256)."""
    directory = Path(directory)
    manifest_path, npz = directory / "manifest.json", directory / "cm.npz"
    if not manifest_path.is_file() or not npz.is_file():
        raise Unavailable(f"spoof back end is missing at {directory}; run `callvet models build` "
                          "(or `callvet spoof train`)", code="spoof_missing")
    manifest = json.loads(manifest_path.read_text())
    if hashlib.sha256(npz.read_bytes()).hexdigest() != manifest.get("sha256"):
        raise Unavailable(f"{npz} does not match its manifest; run `callvet models build --force`",
                          code="spoof_corrupt")
    with np.load(npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_detector(models_dir: Path, *, ffr: float | None = None,
                  directory: Path | None = None) -> SpoofDetector:
    """The process's detector (cached); ``ffr`` defaults to ``CALLVET_SPOOF_FFR`` or 1 %;
    ``directory`` overrides ``models_dir/backend/spoof``."""
    if ffr is None:
        try:
            ffr = float(os.environ.get("CALLVET_SPOOF_FFR", DEFAULT_FFR))
        except ValueError as exc:
            raise InvalidInput("CALLVET_SPOOF_FFR must be a number", code="bad_setting") from exc
    where = Path(directory) if directory is not None else backend_dir(models_dir)
    key = (str(where.resolve()), float(ffr))
    with _cache_lock:
        det = _cache.get(key)
        if det is None:
            det = SpoofDetector(read_backend(where), ffr=ffr)
            _cache[key] = det
        return det
