"""Import a SpeechBrain ECAPA-TDNN speaker model (``spkrec-ecapa-voxceleb`` layout) as an ONNX artifact.

The source directory is what SpeechBrain writes: ``hyperparams.yaml`` (``compute_features`` =
``Fbank``, ``mean_var_norm`` = ``InputNormalization``, ``embedding_model`` = ``ECAPA_TDNN``) and
``embedding_model.ckpt`` (a state dict). It is loaded with SpeechBrain's own hyperpyyaml and checkpoint
recovery, then the chain ``EncoderClassifier.encode_batch`` runs (features -> sentence normalisation ->
ECAPA) is exported as ONNX taking the waveform itself. ``torch.stft`` does not export, so the STFT is a
strided convolution with the windowed DFT basis; everything after it is SpeechBrain's modules as they
are. The export is checked against SpeechBrain's forward pass before the artifact is published.

Nothing here is downloaded: a hyperparams file that points at a hub id through ``pretrained_path`` is
redirected to the local directory.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from callvet.core.errors import Conflict, InvalidInput
from callvet.models.manifest import build_versions, write_manifest

__all__ = ["PARTIAL_HOP_S", "PARTIAL_S", "encode_reference", "import_speechbrain", "load_speechbrain"]

MODEL_FILE = "model.onnx"
PARTIAL_S = 3.0
PARTIAL_HOP_S = 1.5
_MIN_COSINE = 0.9999


def load_speechbrain(source: Path) -> dict[str, Any]:
    """SpeechBrain's hyperparams of ``source`` with the embedding model's checkpoint loaded (strict)."""
    source = Path(source)
    yaml_path, ckpt = source / "hyperparams.yaml", source / "embedding_model.ckpt"
    for need in (yaml_path, ckpt):
        if not need.is_file():
            raise InvalidInput(f"{need} not found: expected a SpeechBrain model directory with "
                               "hyperparams.yaml and embedding_model.ckpt", code="not_speechbrain_dir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # speechbrain/torchaudio import-time deprecation chatter
        from hyperpyyaml import load_hyperpyyaml
        from speechbrain.utils.checkpoints import torch_recovery

    text = yaml_path.read_text()
    overrides = {"pretrained_path": str(source.resolve())} if "pretrained_path:" in text else {}
    try:
        hparams = load_hyperpyyaml(text, overrides=overrides)
    except Exception as exc:  # hyperpyyaml raises yaml/constructor errors of many types
        raise InvalidInput(f"cannot load {yaml_path}: {exc}", code="bad_hyperparams") from exc
    for key in ("compute_features", "mean_var_norm", "embedding_model"):
        if key not in hparams:
            raise InvalidInput(f"{yaml_path} defines no {key!r}", code="bad_hyperparams")
    try:
        torch_recovery(hparams["embedding_model"], ckpt, end_of_epoch=False)
    except Exception as exc:  # torch raises RuntimeError for key/shape mismatch, pickle errors otherwise
        raise InvalidInput(f"{ckpt} does not fit the embedding_model of {yaml_path}: {exc}",
                           code="bad_checkpoint") from exc
    for key in ("compute_features", "mean_var_norm", "embedding_model"):
        hparams[key].eval()
    return hparams


def encode_reference(hparams: dict[str, Any], wav: Any) -> Any:
    """SpeechBrain's own ``EncoderClassifier.encode_batch`` chain (normalize=False) on one waveform."""
    import torch

    with torch.no_grad():
        wavs = torch.as_tensor(wav, dtype=torch.float32).reshape(1, -1)
        lens = torch.ones(1)
        feats = hparams["compute_features"](wavs)
        feats = hparams["mean_var_norm"](feats, lens)
        return hparams["embedding_model"](feats, lens).reshape(-1).numpy()


def stft_basis(stft: Any) -> tuple[int, Any]:
    """SpeechBrain's STFT as a real/imaginary DFT basis (``torch.stft`` does not export to ONNX): the
    window zero-padded to ``n_fft`` and centred, as torch.stft does; ``(n_bins, basis (2*n_bins, n_fft))``
    in float64, for a conv1d with stride ``hop_length``. Shared by every SpeechBrain-front-end export."""
    import torch

    n_fft, win_length = int(stft.n_fft), int(stft.win_length)
    window = torch.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = stft.window.float()
    n_bins = n_fft // 2 + 1
    t = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_bins, dtype=torch.float64)[:, None]
    angle = 2 * torch.pi * k * t / n_fft
    return n_bins, torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()


def _graph(hparams: dict[str, Any]) -> Any:
    import torch

    fbank, norm, model = hparams["compute_features"], hparams["mean_var_norm"], hparams["embedding_model"]
    if getattr(fbank, "deltas", False) or getattr(fbank, "context", False):
        raise InvalidInput("Fbank with deltas/context is not supported", code="unsupported_features")
    stft = fbank.compute_STFT
    if not stft.center or stft.pad_mode != "constant" or stft.normalized_stft or not stft.onesided:
        raise InvalidInput("only centred, zero-padded, one-sided STFT is supported",
                           code="unsupported_features")
    if norm.norm_type != "sentence":
        raise InvalidInput(f"mean_var_norm norm_type {norm.norm_type!r} is not supported (sentence only)",
                           code="unsupported_features")

    n_fft, hop = int(stft.n_fft), int(stft.hop_length)
    n_bins, basis = stft_basis(stft)

    class WaveformEncoder(torch.nn.Module):
        """wav (batch, samples) -> embedding (batch, dim): Fbank, sentence norm, ECAPA."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("basis", basis.float()[:, None, :])
            self.fbanks, self.norm, self.model = fbank.compute_fbanks, norm, model

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.pad(wav[:, None, :], (n_fft // 2, n_fft // 2))
            spec = torch.nn.functional.conv1d(x, self.basis, stride=hop)
            power = (spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2).transpose(1, 2)
            feats = self.fbanks(power)
            feats = feats - feats.mean(dim=1, keepdim=True)
            if self.norm.std_norm:
                feats = feats / feats.std(dim=1, keepdim=True).clamp(min=self.norm.epsilon)
            return self.model(feats).reshape(wav.shape[0], -1)

    return WaveformEncoder().eval()


def cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _export_and_check(hparams: dict[str, Any], out_dir: Path, sample_rate: int) -> tuple[int, int]:
    import numpy as np
    import onnxruntime as ort
    import torch

    graph = _graph(hparams)
    hop = int(hparams["compute_features"].compute_STFT.hop_length)
    example = torch.randn(1, 2 * sample_rate) * 0.1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shape arithmetic
        torch.onnx.export(graph, (example,), str(out_dir / MODEL_FILE), input_names=["wav"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"wav": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}})
    session = ort.InferenceSession(str(out_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    dim = 0
    min_samples = 0
    # The TDNN's reflect padding needs a few frames; find the shortest input the graph accepts so the
    # server can refuse shorter speech with a typed error (SpeechBrain itself fails there too).
    for frames in range(1, 200):
        try:
            session.run(None, {"wav": rng.normal(0, 0.1, (1, frames * hop)).astype(np.float32)})
        except Exception:  # onnxruntime's untyped InvalidArgument for a too-short input
            continue
        min_samples = frames * hop
        break
    if not min_samples:
        raise InvalidInput("exported ECAPA accepts no input up to 2 s", code="export_mismatch")
    for seconds in (1.3, 3.0):
        wav = (rng.normal(0, 0.1, int(seconds * sample_rate))).astype(np.float32)
        ours = session.run(None, {"wav": wav[None, :]})[0].ravel()
        ref = encode_reference(hparams, wav)
        dim = int(ref.size)
        if ours.size != dim or cosine(ours, ref) < _MIN_COSINE:
            cos = cosine(ours, ref)
            raise InvalidInput(f"exported ECAPA disagrees with SpeechBrain (cosine {cos:.6f} on {seconds}s)",
                               code="export_mismatch")
    return dim, min_samples


def import_speechbrain(source: Path, models_dir: Path, *, name: str = "ecapa", force: bool = False) -> Path:
    """Export ``source`` to ``models_dir/name``; returns that directory.

    Raises :class:`InvalidInput` for a directory SpeechBrain cannot load and :class:`Conflict` when
    the encoder exists and ``force`` is not given.
    """
    if not name or not name.replace("-", "").replace("_", "").isalnum() or name == "ge2e":
        raise InvalidInput(f"bad encoder name {name!r} (letters, digits, - and _; not 'ge2e')",
                           code="bad_encoder_name")
    out_dir = Path(models_dir) / name
    if (out_dir / "manifest.json").exists() and not force:
        raise Conflict(f"encoder {name!r} already exists at {out_dir}; use --force to replace it",
                       code="encoder_exists")
    hparams = load_speechbrain(source)
    fbank = hparams["compute_features"]
    sample_rate = int(fbank.compute_STFT.sample_rate)
    if sample_rate != 16000:
        raise InvalidInput(f"model expects {sample_rate} Hz; callvet serves 16 kHz", code="bad_sample_rate")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{name}."))
    try:
        dim, min_samples = _export_and_check(hparams, tmp, sample_rate)
        stft, fb, norm = fbank.compute_STFT, fbank.compute_fbanks, hparams["mean_var_norm"]
        manifest = {
            "name": name,
            "kind": "speaker_encoder",
            "architecture": "ECAPA-TDNN (SpeechBrain)",
            "source": {"package": "speechbrain", "version": version("speechbrain"),
                       "directory": str(Path(source).resolve()),
                       "checkpoint_sha256": _sha(Path(source) / "embedding_model.ckpt")},
            "model_file": MODEL_FILE,
            "input": {"name": "wav", "shape": ["batch", "samples"], "dtype": "float32",
                      "range": "[-1, 1] at 16 kHz"},
            "output": {"name": "embedding", "shape": ["batch", dim], "dtype": "float32"},
            "embedding_size": dim,
            "sample_rate": sample_rate,
            "frontend": {
                "type": "waveform",
                "in_graph": ["fbank", "sentence_mean_norm", "ecapa_tdnn"],
                "n_fft": int(stft.n_fft), "win_length": int(stft.win_length),
                "hop_length": int(stft.hop_length), "window": "hamming", "n_mels": int(fb.n_mels),
                "log_mel": bool(fb.log_mel), "top_db": float(fb.top_db), "std_norm": bool(norm.std_norm),
                "partial_s": PARTIAL_S, "partial_hop_s": PARTIAL_HOP_S, "min_samples": min_samples,
            },
            "versions": {**build_versions(), "hyperpyyaml": version("hyperpyyaml")},
        }
        write_manifest(tmp, manifest, [MODEL_FILE])
        tmp.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def _sha(path: Path) -> str:
    from callvet.models.manifest import sha256_file

    return sha256_file(path)
