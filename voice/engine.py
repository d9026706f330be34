"""The voice engine: one facade from uploaded bytes to voiceprints and calibrated scores.

The blacklist and the call server only talk to this module, so the choice of encoder, the trained
channel-robust back end (:mod:`callvet.voice.backend`) and the score calibration can change without
touching them. Without a trained back end the engine falls back to the raw encoder cosine with
:data:`COSINE_THRESHOLD` (measured on voice-dev, see docs/voice.md); ``backend_id`` says which is in use
and is stored with every print, because prints from different back ends are not comparable.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from callvet.core.errors import InvalidArgument
from callvet.voice.audio import Audio, AudioError, decode
from callvet.voice.vad import SileroVad, default_vad, pauses

if TYPE_CHECKING:
    from callvet.core.settings import Settings
    from callvet.voice.backend import Backend
    from callvet.voice.calibration import Calibration
    from callvet.voice.encoder import OnnxEncoder

__all__ = [
    "COSINE_THRESHOLD",
    "DEFAULT_MIN_NET_SPEECH_S",
    "Accumulator",
    "SpeechAnalysis",
    "VoiceEngine",
    "Voiceprint",
]

#: Raw GE2E cosine at which voice-dev phone-channel trials (enrol 3 utterances, test 1) give about 1 %
#: false alarms per comparison (0.898 measured; bench/voice/RESULTS.md). Only used without a back end.
COSINE_THRESHOLD = 0.90
DEFAULT_MIN_NET_SPEECH_S = 3.0
# issue 9: speech embedded per print; a minute of net speech saturates the encoder, more only costs.
DEFAULT_MAX_SPEECH_S = 120.0
#: Enrolment keeps the old floor: an enrolled print is compared with every caller, a weak one hurts all.
MIN_ENROL_SPEECH_S = 3.0
_SR = 16000
_MIN_SEGMENT_FOR_EMBED_S = 0.5


@dataclass(frozen=True)
class SpeechAnalysis:
    """What VAD found: ``speech`` is the net speech (segments joined) at 16 kHz."""

    speech: np.ndarray
    net_speech_s: float
    duration_s: float
    segments: list[tuple[float, float]]
    pauses: list[tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "net_speech_s": round(self.net_speech_s, 3),
            "duration_s": round(self.duration_s, 3),
            "segments": [list(s) for s in self.segments],
            "pauses": [list(p) for p in self.pauses],
        }


@dataclass(frozen=True)
class Voiceprint:
    """A print in the back end's space: inner product of two prints is the raw score.

    ``stats`` are this print's own calibration terms, needed for both sides of a comparison; store them
    next to the vector. Cosine back end: unit-length vector, stats = (mean, std) of its top-N scores
    against the impostor cohort (AS-norm). PLDA back end (shipped): vector = L'z with P = LL', so the
    inner product is the PLDA cross term, not unit length; stats = (-z'Qz, 1).
    """

    vector: np.ndarray
    stats: tuple[float, float]
    net_speech_s: float


class VoiceEngine:
    """Encoder + VAD + optional back end; thread-safe, build once per process."""

    def __init__(
        self,
        encoder: OnnxEncoder,
        *,
        backend: Backend | None = None,
        vad: SileroVad | None = None,
        min_net_speech_s: float | None = None,
        max_upload_bytes: int | None = None,
        max_audio_s: float | None = None,
        max_speech_s: float = DEFAULT_MAX_SPEECH_S,
        calibration: Calibration | None = None,
    ) -> None:
        if encoder.sample_rate != _SR:
            raise InvalidArgument(f"encoder runs at {encoder.sample_rate} Hz; the engine needs {_SR}")
        self.encoder = encoder
        self.backend = backend
        self.vad = vad or default_vad()
        self.sample_rate = _SR
        self.max_upload_bytes = max_upload_bytes
        self.max_audio_s = max_audio_s
        self.max_speech_s = float(max_speech_s)
        self.calibration = None
        self.snorm = None
        if calibration is not None and backend is not None and calibration.backend_id == backend.id:
            self.calibration = calibration
            self.snorm = calibration.snorm(backend.calibrate)
        if min_net_speech_s is None:
            min_net_speech_s = (self.calibration.min_net_speech_s if self.calibration is not None
                                else DEFAULT_MIN_NET_SPEECH_S)
        self.min_net_speech_s = float(min_net_speech_s)
        self.min_enrol_speech_s = max(self.min_net_speech_s, MIN_ENROL_SPEECH_S)
        self.encoder_name = encoder.name
        if backend is None:
            self.dim = encoder.dim
            self.threshold = COSINE_THRESHOLD
            self.backend_id = f"{encoder.name}:{str(encoder.manifest.get('sha256', ''))[:12]}:cosine"
        else:
            self.dim = backend.dim
            self.threshold = backend.threshold
            self.backend_id = backend.id

    @classmethod
    def from_settings(cls, settings: Settings, *, backend_dir: Path | bool | None = None) -> VoiceEngine:
        """Load the configured encoder and, when trained for it, its back end.

        ``backend_dir``: None looks in ``models_dir/backend/<encoder>``, False forces plain cosine.
        """
        from callvet.voice.encoder import load_encoder

        encoder = load_encoder(settings.models_dir, settings.encoder)
        backend = None
        calibration = None
        if backend_dir is not False:
            from callvet.voice.backend import MANIFEST_FILE, backend_dir_for, find_backend
            from callvet.voice.calibration import find_calibration

            root = Path(backend_dir) if isinstance(backend_dir, str | Path) else settings.models_dir
            backend = find_backend(encoder, root)
            if backend is not None and settings.openset_calibration:
                directory = root if (root / MANIFEST_FILE).is_file() else backend_dir_for(root, encoder.name)
                calibration = find_calibration(directory, backend.id)
        return cls(encoder, backend=backend, max_upload_bytes=settings.max_upload_bytes,
                   max_audio_s=settings.max_audio_s, max_speech_s=settings.max_speech_s,
                   calibration=calibration)

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "backend_id": self.backend_id,
            "dim": self.dim,
            "threshold": self.threshold,
            "calibrated": self.calibration is not None,
            "min_net_speech_s": self.min_net_speech_s,
            "min_enrol_speech_s": self.min_enrol_speech_s,
            "sample_rate": self.sample_rate,
        }

    # -- audio ---------------------------------------------------------------------------------
    def decode(self, data: bytes, **kw: Any) -> Audio:
        kw.setdefault("max_bytes", self.max_upload_bytes)
        if self.max_audio_s is not None:
            kw.setdefault("max_seconds", self.max_audio_s)
        return decode(data, **kw)

    def analyse(self, audio: Audio) -> SpeechAnalysis:
        """VAD at the audio's own rate when Silero supports it (8/16 kHz), net speech at 16 kHz, at most
        ``max_speech_s`` of it (the first), so the encoder's cost is bounded whatever the upload."""
        vad_rate = audio.sample_rate if audio.sample_rate in (8000, 16000) else _SR
        vad_audio = audio.to(vad_rate)
        segments = self.vad.segments(vad_audio.samples, vad_rate)
        x16 = audio.to(_SR).samples
        pieces = [x16[int(s * _SR):int(e * _SR)] for s, e in segments]
        speech = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
        speech = speech[: int(self.max_speech_s * _SR)]
        return SpeechAnalysis(
            speech=speech,
            net_speech_s=len(speech) / _SR,
            duration_s=audio.duration_s,
            segments=segments,
            pauses=pauses(segments),
        )

    # -- prints --------------------------------------------------------------------------------
    def _require_speech(self, net_s: float, *, enrol: bool = False) -> None:
        need = self.min_enrol_speech_s if enrol else self.min_net_speech_s
        if net_s + 1e-6 < need:
            what = "an enrolment print" if enrol else "a voiceprint"
            raise AudioError(
                f"only {math.floor(net_s * 100) / 100:.2f} s of net speech; at least {need:.2f} s is "
                f"needed for {what}", code="too_little_speech",
                net_speech_s=round(net_s, 3), min_net_speech_s=need,
            )

    def embedding(self, speech16k: np.ndarray) -> np.ndarray:
        """Raw encoder embedding (before the back end)."""
        return self.encoder.embed(speech16k)

    def _finish(self, raw_embeddings: np.ndarray, net_s: float) -> Voiceprint:
        """Raw embeddings (n, encoder dim) of the same speaker -> one print in back-end space."""
        if self.backend is None:
            mean = raw_embeddings.mean(axis=0)
            vec = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
            return Voiceprint(vec, (0.0, 1.0), net_s)
        vec = self.backend.project_mean(raw_embeddings)
        return Voiceprint(vec, self.backend.cohort_stats(vec), net_s)

    def voiceprint(self, speech16k: np.ndarray, *, enrol: bool = False) -> Voiceprint:
        """Print of net speech; ``enrol`` also embeds simulated phone-channel copies when the back end
        asks for it, so a clean enrolment recording matches the same person on a phone line."""
        x = np.asarray(speech16k, dtype=np.float32)
        net_s = len(x) / _SR
        self._require_speech(net_s, enrol=enrol)
        embs = [self.encoder.embed(x)]
        if enrol and self.backend is not None and self.backend.enrol_augment:
            from callvet.voice.augment import channel_copies

            embs += [self.encoder.embed(y) for y in channel_copies(x, _SR, seed=len(x))]
        return self._finish(np.stack(embs), net_s)

    def accumulator(self) -> Accumulator:
        return Accumulator(self)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, a: Voiceprint, b: Voiceprint) -> float:
        """Calibrated score of two prints (symmetric)."""
        raw = np.array([float(np.dot(a.vector, b.vector))])
        return float(self.calibrate(a, raw, np.array([b.stats], dtype=np.float64))[0])

    def calibrate(self, probe: Voiceprint, raw: np.ndarray, model_stats: np.ndarray) -> np.ndarray:
        """Raw inner products against n enrolled prints -> scores on which ``threshold`` applies."""
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
        if self.backend is None:
            return raw
        stats = np.asarray(model_stats, dtype=np.float64).reshape(-1, 2)
        return self.backend.calibrate(raw, probe.stats, stats)

    def normalise(self, probe: Voiceprint, raw: np.ndarray, model_vectors: np.ndarray,
                  model_stats: np.ndarray) -> np.ndarray:
        """Back-end scores against enrolled prints, then adaptive s-norm against the cohort (when
        calibrated): the scores the open-set thresholds apply to."""
        s = self.calibrate(probe, raw, model_stats)
        if self.snorm is None:
            return s
        from callvet.voice.calibration import SNorm

        pm = self.snorm.moments(np.asarray(probe.vector)[None, :], np.array([probe.stats]))
        mm = self.snorm.moments(model_vectors, model_stats)
        return SNorm.apply(s, pm, mm)


@dataclass
class Accumulator:
    """Speech of one live call, embedded as it arrives (window embeddings are kept, audio is not)."""

    engine: VoiceEngine
    _partials: list[np.ndarray] = field(default_factory=list)
    _pending: list[np.ndarray] = field(default_factory=list)
    _pending_s: float = 0.0
    net_speech_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Window embeddings carried over from a checkpoint (a call resumed on another replica): their sum
    #: and count, which is all the print needs of them (it is their normalised mean).
    _base_sum: np.ndarray | None = None
    _base_count: int = 0

    _CHUNK_S = 3.0

    @property
    def chunks(self) -> int:
        """Embedded chunks so far (a new one is the moment to checkpoint)."""
        return len(self._partials)

    def state(self) -> dict[str, Any]:
        """The running state as JSON-able data: the embedded speech's window-embedding sum and count and
        the net speech they cover. Speech not yet embedded (under one 3 s chunk) is not in it: a
        checkpoint never holds audio."""
        import base64

        with self._lock:
            total = self._base_sum.copy() if self._base_sum is not None else None
            count = self._base_count
            if self._partials:
                allp = np.concatenate(self._partials).astype(np.float64)
                total = allp.sum(axis=0) if total is None else total + allp.sum(axis=0)
                count += len(allp)
            return {"count": count, "net_speech_s": round(self.net_speech_s - self._pending_s, 6),
                    "dim": 0 if total is None else len(total),
                    "sum": "" if total is None else base64.b64encode(total.tobytes()).decode()}

    def embed_pending(self) -> None:
        """Embed the speech still under one chunk (a call handed over: nothing heard is left out of the
        checkpoint); less than an embeddable segment is dropped from the net speech instead."""
        with self._lock:
            if self._pending and self._pending_s >= _MIN_SEGMENT_FOR_EMBED_S:
                self._partials.append(self.engine.encoder.embed_partials(np.concatenate(self._pending)))
            else:
                self.net_speech_s -= self._pending_s
            self._pending, self._pending_s = [], 0.0

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (a fresh accumulator only)."""
        import base64

        with self._lock:
            if self._partials or self._pending or self._base_count:
                raise InvalidArgument("only a fresh accumulator can be restored")
            count = int(state.get("count") or 0)
            if count:
                total = np.frombuffer(base64.b64decode(state["sum"]), dtype=np.float64).copy()
                if len(total) != int(state["dim"]):
                    raise InvalidArgument("voiceprint checkpoint does not match its dimension")
                self._base_sum, self._base_count = total, count
            self.net_speech_s = float(state.get("net_speech_s") or 0.0)

    def add(self, speech16k_segment: np.ndarray) -> None:
        x = np.asarray(speech16k_segment, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        with self._lock:
            self._pending.append(x)
            self._pending_s += len(x) / _SR
            self.net_speech_s += len(x) / _SR
            if self._pending_s >= self._CHUNK_S:
                self._partials.append(self.engine.encoder.embed_partials(np.concatenate(self._pending)))
                self._pending, self._pending_s = [], 0.0

    def voiceprint(self) -> Voiceprint:
        with self._lock:
            self.engine._require_speech(self.net_speech_s)
            parts = list(self._partials)
            if self._pending and (self._pending_s >= _MIN_SEGMENT_FOR_EMBED_S
                                  or not (parts or self._base_count)):
                parts.append(self.engine.encoder.embed_partials(np.concatenate(self._pending)))
            if self._base_sum is None:
                mean = np.concatenate(parts).mean(axis=0)
            else:
                total, count = self._base_sum.copy(), self._base_count
                if parts:
                    allp = np.concatenate(parts).astype(np.float64)
                    total, count = total + allp.sum(axis=0), count + len(allp)
                mean = (total / count).astype(np.float32)
            emb = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
            return self.engine._finish(emb[None, :], self.net_speech_s)
