"""Manifests of built encoder artifacts: what was built, from what, and the digests that prove it.

Every encoder directory holds ``manifest.json`` plus the files it lists; the serving side
(:mod:`callvet.voice.encoder`) re-hashes each listed file on load, so a truncated copy or a swapped
model is refused instead of silently producing different voiceprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "MANIFEST", "build_versions", "is_complete", "sha256_file", "write_manifest"]

MANIFEST = "manifest.json"
#: Version of the artifact layout the server understands; a builder change that alters what the server
#: must do bumps it, and ``--if-missing`` then rebuilds older artifacts.
FORMAT = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_versions() -> dict[str, str]:
    """Versions of the build toolchain; recorded so a rebuilt artifact can be traced to its tools."""
    import onnx
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnx_opset": str(onnx.defs.onnx_opset_version()),
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any], files: list[str]) -> Path:
    """Write ``manifest.json`` last and atomically: a directory with a manifest is a finished build."""
    body = {"format": FORMAT, **manifest}
    body["files"] = {name: sha256_file(out_dir / name) for name in files}
    body["sha256"] = body["files"][body["model_file"]]
    body["built_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".manifest.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    path = out_dir / MANIFEST
    os.replace(tmp, path)
    return path


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
