"""Manifests of built encoder artifacts: what was built, from what, and the digests that prove it.

Every encoder directory holds ``manifest.json`` plus the files it lists; the serving side
(:mod:`callvet.voice.encoder`) re-hashes each listed file on load, so a truncated copy or a swapped
model is refused instead of silently producing different voiceprints.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callvet.core.artifacts import FORMAT, MANIFEST, is_complete, sha256_file

__all__ = ["FORMAT", "MANIFEST", "build_versions", "is_complete", "sha256_file", "write_manifest"]

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
