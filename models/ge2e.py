"""Build the GE2E speaker encoder (Resemblyzer's pretrained weights) as an ONNX artifact.

The weights ship inside the ``resemblyzer`` wheel, so the build is offline and reproducible. Only the
network (3-layer LSTM + linear + ReLU + L2 norm over one 160-frame partial window) goes into ONNX; the
frontend (volume normalisation, power-mel spectrogram, partial windows) is done in numpy at serving time
by :mod:`callvet.voice.encoder` with librosa's mel basis saved here, so serving needs neither torch nor
librosa. The frontend parameters are written to the manifest, which is what the server reads.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from callvet.models.manifest import build_versions, is_complete, write_manifest

__all__ = ["FRONTEND", "NAME", "build", "is_built", "resemblyzer_encoder"]

NAME = "ge2e"
MODEL_FILE = "model.onnx"
MEL_FILE = "mel_basis.npy"

#: Resemblyzer's hparams (resemblyzer/hparams.py) and embed_utterance defaults, as the server uses them.
FRONTEND: dict[str, Any] = {
    "type": "ge2e_mel",
    "sample_rate": 16000,
    "n_fft": 400,
    "hop_length": 160,
    "win_length": 400,
    "window": "hann_periodic",
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "n_mels": 40,
    "mel_basis_file": MEL_FILE,
    "partial_frames": 160,
    "partial_rate_per_s": 1.3,
    "partial_min_coverage": 0.75,
    "volume_norm_dbfs": -30.0,
    "volume_norm_increase_only": True,
}


def resemblyzer_encoder() -> Any:
    """Resemblyzer's own ``VoiceEncoder`` on CPU: the source of the weights and the reference in tests.

    Resemblyzer imports ``webrtcvad`` 2.0.10, which imports ``pkg_resources`` only to read its own
    version at import time; setuptools >= 81 no longer ships ``pkg_resources``. When it is absent, a
    module answering that one question from :mod:`importlib.metadata` stands in during the import and
    is removed right after, so nothing else (pytest, torch) mistakes it for the real one.
    """
    import importlib.metadata
    import sys
    import types

    shimmed = False
    if "webrtcvad" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")

            class _Dist:
                def __init__(self, name: str) -> None:
                    self.project_name = name
                    self.version = importlib.metadata.version(name)

            shim.get_distribution = _Dist  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = shim
            shimmed = True
    try:
        with warnings.catch_warnings():
            # resemblyzer 0.1.4 imports binary_dilation from scipy's deprecated ndimage.morphology path.
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
    finally:
        if shimmed:
            sys.modules.pop("pkg_resources", None)

    return VoiceEncoder(device="cpu", verbose=False).eval()


def is_built(models_dir: Path) -> bool:
    return is_complete(Path(models_dir) / NAME)


def _export(out_dir: Path) -> None:
    import librosa
    import numpy as np
    import torch
    encoder = resemblyzer_encoder()

    class Network(torch.nn.Module):
        """Resemblyzer's forward pass, without the device plumbing, in a form the exporter traces."""

        def __init__(self, enc: Any) -> None:
            super().__init__()
            self.lstm, self.linear, self.relu = enc.lstm, enc.linear, enc.relu

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = self.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    net = Network(encoder).eval()
    example = torch.rand(2, FRONTEND["partial_frames"], FRONTEND["n_mels"])
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns (LSTM without h0/c0 inputs, tracer shape checks, the TorchScript exporter's
        # deprecation); with warnings-as-errors a warning raised inside torch's C++ tracing surfaces as a
        # SystemError. The export is verified instead: tests compare it with resemblyzer (cosine 1.0).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (example,), str(out_dir / MODEL_FILE), input_names=["mels"], output_names=["embeddings"],
            dynamic_axes={"mels": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=17,
            dynamo=False,
        )
    mel = librosa.filters.mel(sr=FRONTEND["sample_rate"], n_fft=FRONTEND["n_fft"], n_mels=FRONTEND["n_mels"])
    np.save(out_dir / MEL_FILE, mel.astype(np.float32))


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Export into ``models_dir/ge2e``; returns the files written (empty when already built)."""
    out_dir = Path(models_dir) / NAME
    if is_built(models_dir) and not force:
        return []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{NAME}."))
    try:
        _export(tmp)
        manifest = {
            "name": NAME,
            "kind": "speaker_encoder",
            "architecture": "GE2E (3-layer LSTM 256 + linear 256 + ReLU + L2)",
            "source": {"package": "resemblyzer", "version": version("resemblyzer"),
                       "weights": "resemblyzer/pretrained.pt"},
            "model_file": MODEL_FILE,
            "input": {"name": "mels", "shape": ["batch", FRONTEND["partial_frames"], FRONTEND["n_mels"]],
                      "dtype": "float32"},
            "output": {"name": "embeddings", "shape": ["batch", 256], "dtype": "float32"},
            "embedding_size": 256,
            "sample_rate": FRONTEND["sample_rate"],
            "frontend": FRONTEND,
            "versions": {**build_versions(), "librosa": version("librosa")},
        }
        write_manifest(tmp, manifest, [MODEL_FILE, MEL_FILE])
        tmp.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return sorted(out_dir.iterdir())
