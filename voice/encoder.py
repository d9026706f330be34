"""Speaker encoders at serving time: an ONNX network behind a numpy frontend, no torch, no librosa.

Artifacts are built by ``callvet models build`` (GE2E) or ``callvet models import-speechbrain``
(ECAPA-TDNN) into ``Settings.models_dir / <name>``; each has a ``manifest.json`` whose frontend section
tells this module how to turn 16 kHz float32 speech into network input. Every listed file is re-hashed
on load: a voiceprint made by a different or damaged model would silently never match the blacklist, so
a mismatch is an :class:`Unavailable` error, not a warning.

Two frontends exist:

- ``ge2e_mel`` (Resemblyzer): volume normalisation to -30 dBFS (increase only), librosa's power-mel
  spectrogram (25 ms Hann window, 10 ms hop, 40 bands), 160-frame partial windows at 1.3/s; the
  network embeds each window, the utterance embedding is their L2-normalised mean.
- ``waveform`` (SpeechBrain ECAPA): the ONNX graph takes the waveform itself (fbank + sentence mean
  normalisation + ECAPA inside the graph); ``embed`` is one pass over the utterance, partials are
  fixed-length windows (``partial_s``, ``partial_hop_s`` in the manifest) embedded separately.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput, Unavailable

__all__ = ["OnnxEncoder", "load_encoder", "verify_artifact"]

_INT16_MAX = 2**15 - 1
#: Artifact layout version this module reads (callvet.models.manifest.FORMAT writes it; not imported
#: from there so that serving does not import the build package).
_FORMAT = 1


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_artifact(directory: Path) -> dict[str, Any]:
    """Read the manifest of ``directory`` and check every listed file's sha256; returns the manifest."""
    name = directory.name
    hint = "run `callvet models build`" if name in ("ge2e", "res2net") else (
        f"run `callvet models import-speechbrain DIR --name {name}`")
    path = directory / "manifest.json"
    if not path.is_file():
        raise Unavailable(f"speaker encoder {name!r} is not built at {directory}; {hint}",
                          code="encoder_missing", encoder=name)
    try:
        manifest = json.loads(path.read_text())
        files: dict[str, str] = manifest["files"]
        required = ("name", "model_file", "embedding_size", "sample_rate", "frontend")
        missing = [k for k in required if k not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
        if manifest.get("format") != _FORMAT:
            raise KeyError(f"format {manifest.get('format')!r}, this server reads format {_FORMAT}")
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"speaker encoder {name!r}: unreadable manifest ({exc}); {hint} --force",
                          code="encoder_corrupt", encoder=name) from exc
    for fname, digest in files.items():
        fpath = directory / fname
        if not fpath.is_file():
            raise Unavailable(f"speaker encoder {name!r}: {fname} is missing; {hint} --force",
                              code="encoder_corrupt", encoder=name)
        if _sha256(fpath) != digest:
            raise Unavailable(
                f"speaker encoder {name!r}: {fname} does not match its manifest sha256 (tampered or "
                f"truncated); {hint} --force", code="encoder_corrupt", encoder=name)
    return manifest


class OnnxEncoder:
    """One speaker encoder; thread-safe (onnxruntime sessions may be run concurrently)."""

    def __init__(self, directory: Path, manifest: dict[str, Any], *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.directory = directory
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.dim: int = int(manifest["embedding_size"])
        self.sample_rate: int = int(manifest["sample_rate"])
        self._fe: dict[str, Any] = manifest["frontend"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(intra_op_threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(directory / manifest["model_file"]), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad graph
            raise Unavailable(f"speaker encoder {self.name!r} cannot be loaded: {exc}",
                              code="encoder_corrupt", encoder=self.name) from exc
        self._input = self._session.get_inputs()[0].name
        if self._fe["type"] == "ge2e_mel":
            self._mel_basis = np.load(directory / self._fe["mel_basis_file"]).astype(np.float32)
            n = int(self._fe["win_length"])
            self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
        elif self._fe["type"] != "waveform":
            raise Unavailable(f"speaker encoder {self.name!r}: unknown frontend {self._fe['type']!r}",
                              code="encoder_corrupt", encoder=self.name)

    def __repr__(self) -> str:
        return f"OnnxEncoder(name={self.name!r}, dim={self.dim}, sample_rate={self.sample_rate})"

    def _check(self, wav: np.ndarray) -> np.ndarray:
        x = np.asarray(wav)
        if x.ndim != 1 or x.size == 0:
            raise InvalidInput("speech must be a non-empty mono float array", code="empty")
        x = x.astype(np.float32, copy=False)
        if not np.all(np.isfinite(x)):
            raise InvalidInput("speech contains NaN or infinite samples", code="nan")
        return x

    # -- GE2E ------------------------------------------------------------------------------------
    def _normalise_volume(self, x: np.ndarray) -> np.ndarray:
        """Resemblyzer's ``normalize_volume``: GE2E's power-mel input is not gain-invariant."""
        rms = float(np.sqrt(np.mean((x.astype(np.float64) * _INT16_MAX) ** 2)))
        if rms == 0.0:
            return x
        change = float(self._fe["volume_norm_dbfs"]) - 20 * np.log10(rms / _INT16_MAX)
        if change < 0 and self._fe.get("volume_norm_increase_only", True):
            return x
        return (x * (10 ** (change / 20))).astype(np.float32)

    def _mel(self, x: np.ndarray) -> np.ndarray:
        """librosa.feature.melspectrogram(center=True, pad_mode="constant", power=2) as (frames, n_mels)."""
        n_fft, hop = int(self._fe["n_fft"]), int(self._fe["hop_length"])
        padded = np.pad(x, (n_fft // 2, n_fft // 2), mode="constant")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
        spec = np.fft.rfft(frames * self._window, n=n_fft, axis=1)
        power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
        return (power @ self._mel_basis.T).astype(np.float32)

    def _ge2e_partials(self, x: np.ndarray) -> np.ndarray:
        frames_per_partial = int(self._fe["partial_frames"])
        hop = int(self._fe["hop_length"])
        rate, min_cov = float(self._fe["partial_rate_per_s"]), float(self._fe["partial_min_coverage"])
        n_samples = len(x)
        n_frames = int(np.ceil((n_samples + 1) / hop))
        frame_step = max(1, int(np.round((self.sample_rate / rate) / hop)))
        steps = max(1, n_frames - frames_per_partial + frame_step + 1)
        starts = list(range(0, steps, frame_step))
        last = starts[-1] * hop
        coverage = (n_samples - last) / (frames_per_partial * hop)
        if coverage < min_cov and len(starts) > 1:
            starts = starts[:-1]
        need = (starts[-1] + frames_per_partial) * hop
        x = self._normalise_volume(x)
        if need >= len(x):
            x = np.pad(x, (0, need - len(x)), mode="constant")
        mel = self._mel(x)
        batch = np.stack([mel[s:s + frames_per_partial] for s in starts]).astype(np.float32)
        return self._run(batch)

    # -- waveform graphs (ECAPA) -----------------------------------------------------------------
    def _min_length(self, x: np.ndarray) -> np.ndarray:
        need = int(self._fe.get("min_samples", 0))
        if len(x) < need:
            raise InvalidInput(f"{len(x) / self.sample_rate:.3f} s of speech is too short for encoder "
                               f"{self.name!r} (needs {need / self.sample_rate:.3f} s)",
                               code="too_little_speech")
        return x

    def _waveform_partials(self, x: np.ndarray) -> np.ndarray:
        x = self._min_length(x)
        win = int(float(self._fe.get("partial_s", 3.0)) * self.sample_rate)
        hop = int(float(self._fe.get("partial_hop_s", 1.5)) * self.sample_rate)
        if len(x) <= win:
            pieces = [x]
        else:
            starts = list(range(0, len(x) - win + 1, hop))
            if starts[-1] + win < len(x):
                starts.append(len(x) - win)
            pieces = [x[s:s + win] for s in starts]
        return np.concatenate([self._run(p[None, :].astype(np.float32)) for p in pieces])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run(None, {self._input: batch})[0]
        except Exception as exc:  # onnxruntime's own exception types are not importable portably
            raise Unavailable(f"speaker encoder {self.name!r} failed on input {batch.shape}: {exc}",
                              code="encoder_failed", encoder=self.name) from exc
        out = np.asarray(out, dtype=np.float32).reshape(batch.shape[0], self.dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    # -- public ----------------------------------------------------------------------------------
    def embed_partials(self, wav16k: np.ndarray) -> np.ndarray:
        """Per-window embeddings ``(n, dim)``, each L2-normalised; ``embed`` is their normalised mean.

        A live call can keep these for every speech segment and average them, instead of re-embedding
        the whole call each time it wants a voiceprint.
        """
        x = self._check(wav16k)
        if self._fe["type"] == "ge2e_mel":
            return self._ge2e_partials(x)
        return self._waveform_partials(x)

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        """The utterance embedding ``(dim,)`` float32, L2-normalised.

        GE2E: the normalised mean of the partial windows (exactly Resemblyzer's ``embed_utterance``).
        Waveform graphs (ECAPA): one pass over the whole utterance, as SpeechBrain's ``encode_batch``;
        the mean of ``embed_partials`` is then a close, not identical, estimate.
        """
        if self._fe["type"] == "waveform":
            return self._run(self._min_length(self._check(wav16k))[None, :])[0]
        partials = self.embed_partials(wav16k)
        mean = partials.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


_CACHE: dict[tuple[str, int], OnnxEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(models_dir: Path, name: str, *, intra_op_threads: int | None = None) -> Any:
    """Load (once per process, directory and thread count) the encoder ``name`` built under ``models_dir``;
    ``a+b`` is a :class:`~callvet.voice.fusion.FusedEncoder` of encoders ``a`` and ``b``.

    ``intra_op_threads`` defaults to ``CALLVET_ENCODER_THREADS`` or 1: one thread per embedding lets
    many calls embed in parallel, which matters more for a call centre than one call's latency. The
    files are re-hashed on every call (about 10 ms), so a model replaced on disk is noticed.
    Raises :class:`Unavailable` when it is not built, or when its files do not match the manifest.
    """
    if intra_op_threads is None:
        from callvet.core.settings import env_value

        intra_op_threads = int(env_value("encoder_threads"))
    if not name or "/" in name or name.startswith("."):
        raise InvalidInput(f"bad encoder name {name!r}", code="bad_encoder_name")
    if "+" in name:
        from callvet.voice.fusion import load_fused_encoder

        return load_fused_encoder(models_dir, name, load_encoder, intra_op_threads=intra_op_threads)
    directory = (Path(models_dir) / name).resolve()
    key = (str(directory), int(intra_op_threads))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        manifest = verify_artifact(directory)
        if cached is not None and cached.manifest.get("sha256") == manifest.get("sha256"):
            return cached
        encoder = OnnxEncoder(directory, manifest, intra_op_threads=intra_op_threads)
        _CACHE[key] = encoder
        return encoder
