"""One calibrated spoof score per request and per call.

Three detectors, fused by logistic regression trained on phone-channel audio (``cm.npz``, made by
``callvet spoof train``): AASIST's logit difference (spoof - bona fide, ONNX, windows of 64 600 samples at
16 kHz), and two LFCC-GMM log-likelihood ratios at 8 kHz (replay vs bona fide, synthetic vs bona fide).
The fused score is the log-odds of spoof; the flag threshold is the quantile of held-out genuine
callers' scores that gives the configured false-flag rate (``CALLVET_SPOOF_FFR``, default 1 %). ``kind``
comes from a second logistic regression (replay vs synthetic) and is only set on a flagged score.
Serving needs onnxruntime and numpy only.
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
from callvet.voice.spoof.features import Gmm, lfcc

__all__ = ["CM_FILE", "DEFAULT_FFR", "SpoofDetector", "SpoofResult", "SpoofWatch", "aasist_input",
           "load_detector"]

DEFAULT_FFR = 0.01
DEFAULT_MAX_AASIST = 3
NB_SAMP = 64600
MAX_WINDOWS = 1
CM_FILE = Path(__file__).with_name("cm.npz")
_SR = 16000
_MIN_SAMPLES = _SR // 2


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
    """AASIST + LFCC-GMMs + fusion; thread-safe (onnxruntime sessions are), build once per process."""

    def __init__(self, aasist: _Aasist, cm: dict[str, np.ndarray], *, ffr: float = DEFAULT_FFR) -> None:
        if not 0.0 < ffr < 0.5:
            raise InvalidInput("CALLVET_SPOOF_FFR must be in (0, 0.5)", code="bad_setting")
        self.aasist = aasist
        self.gmms = {k: Gmm(cm[f"gmm_{k}_w"], cm[f"gmm_{k}_m"], cm[f"gmm_{k}_v"])
                     for k in ("bona", "replay", "synth")}
        self.fusion_w, self.fusion_b = cm["fusion_w"].astype(np.float64), float(cm["fusion_b"])
        self.kind_w, self.kind_b = cm["kind_w"].astype(np.float64), float(cm["kind_b"])
        self.bona_scores = np.sort(cm["bona_scores"].astype(np.float64))
        self.meta = json.loads(str(cm["meta"]))
        self.ffr = float(ffr)
        self.threshold = float(np.quantile(self.bona_scores, 1.0 - self.ffr))

    def describe(self) -> dict[str, Any]:
        return {"ffr": self.ffr, "threshold": round(self.threshold, 4), "aasist_sha256":
                self.aasist.manifest.get("sha256"), "trained_on": self.meta.get("trained_on")}

    def components(self, x16k: np.ndarray, *, aasist: float | None = None) -> np.ndarray:
        """[AASIST spoof logit diff, replay LLR, synthetic LLR] of one stretch of speech; a given
        ``aasist`` value is used instead of running the network (a call past its AASIST budget)."""
        x = np.asarray(x16k, dtype=np.float32).reshape(-1)
        if len(x) < _MIN_SAMPLES:
            raise InvalidInput("too little speech for a spoof score (0.5 s needed)", code="too_little_speech")
        if not np.all(np.isfinite(x)):
            raise InvalidInput("audio contains NaN or infinite samples", code="nan")
        a = self.aasist.score(x) if aasist is None else float(aasist)
        f = lfcc(resample(x[-MAX_WINDOWS * NB_SAMP:], _SR, 8000))
        bona = self.gmms["bona"].frame_loglik(f)
        r = float(np.mean(self.gmms["replay"].frame_loglik(f) - bona))
        s = float(np.mean(self.gmms["synth"].frame_loglik(f) - bona))
        return np.array([a, r, s], dtype=np.float64)

    def decide(self, comps: np.ndarray) -> SpoofResult:
        c = np.asarray(comps, dtype=np.float64)
        score = float(c @ self.fusion_w + self.fusion_b)
        flag = score > self.threshold
        kind = None
        if flag:
            kind = "replay" if float(c @ self.kind_w + self.kind_b) > 0 else "synthetic"
        return SpoofResult(score, bool(flag), kind, self.threshold,
                           {"aasist": float(c[0]), "replay_llr": float(c[1]), "synthetic_llr": float(c[2])})

    def score(self, x16k: np.ndarray) -> SpoofResult:
        return self.decide(self.components(x16k))

    def watch(self, *, max_aasist: int | None = None) -> SpoofWatch:
        if max_aasist is None:
            try:
                max_aasist = int(os.environ.get("CALLVET_SPOOF_MAX_AASIST", DEFAULT_MAX_AASIST))
            except ValueError as exc:
                raise InvalidInput("CALLVET_SPOOF_MAX_AASIST must be an integer", code="bad_setting") from exc
        return SpoofWatch(self, max_aasist=max_aasist)


class SpoofWatch:
    """A live call's spoof state: the latest AASIST window of speech, scored at each voiceprint check.

    Only the newest :data:`NB_SAMP` samples are kept (bounded memory); each check scores that window
    once and the call's result is the fusion of the mean components over all checks so far, so cost is
    one window per check, not per frame. AASIST (the costly part, ~0.3-0.5 core-s a window) runs on
    the first ``max_aasist`` checks of a call only (``CALLVET_SPOOF_MAX_AASIST``, default 3, i.e.
    about 12 s of distinct speech); later checks reuse its mean and re-score the cheap LFCC-GMMs on the
    new speech, so a call's spoof cost is bounded whatever its length. 0 = AASIST on every check.
    """

    def __init__(self, detector: SpoofDetector, *, max_aasist: int = 0) -> None:
        self.detector = detector
        self.max_aasist = int(max_aasist)
        self._ring = np.zeros(0, np.float32)
        self._new = 0
        self._sum = np.zeros(3)
        self._n = 0
        self.aasist_runs = 0
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
            reuse = (self._sum[0] / self._n
                     if self.max_aasist > 0 and self.aasist_runs >= self.max_aasist and self._n else None)
        comps = self.detector.components(window, aasist=reuse)
        with self._lock:
            self.aasist_runs += reuse is None
            self._sum += comps
            self._n += 1
            self.last = self.detector.decide(self._sum / self._n)
            return self.last


_cache: dict[tuple[str, float], SpoofDetector] = {}
_cache_lock = threading.Lock()


def load_detector(models_dir: Path, *, ffr: float | None = None,
                  cm_file: Path | None = None) -> SpoofDetector:
    """The process's detector (cached); ``ffr`` defaults to ``CALLVET_SPOOF_FFR`` or 1 %."""
    if ffr is None:
        try:
            ffr = float(os.environ.get("CALLVET_SPOOF_FFR", DEFAULT_FFR))
        except ValueError as exc:
            raise InvalidInput("CALLVET_SPOOF_FFR must be a number", code="bad_setting") from exc
    cm_path = Path(cm_file) if cm_file is not None else CM_FILE
    key = (f"{Path(models_dir).resolve()}|{cm_path}", float(ffr))
    with _cache_lock:
        det = _cache.get(key)
        if det is None:
            if not cm_path.is_file():
                raise Unavailable(f"spoof back end {cm_path} is missing; run `callvet spoof train`",
                                  code="spoof_missing")
            with np.load(cm_path, allow_pickle=False) as z:
                cm = {k: z[k] for k in z.files}
            det = SpoofDetector(_Aasist(Path(models_dir) / "aasist"), cm, ffr=ffr)
            _cache[key] = det
        return det
