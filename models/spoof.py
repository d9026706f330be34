"""The spoof countermeasure's trained back end as a model artifact (``callvet models build``).

The back end (``backend/spoof/cm.npz`` + ``manifest.json``) is committed under models/artifacts, like
the voiceprint back end, so a fresh checkout has it. This builder checks it against its manifest
(sha256) and, when it is missing or corrupt (or the models directory is elsewhere and has none), makes
it: a copy of the committed one when that is intact, else a full ``callvet spoof train`` run from the
Debian packages ./dev installs (about 5-10 min on 2 shared cores). ``--force`` does not retrain an
intact artifact -- that changes shipped figures and is ``callvet spoof train``'s job.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from callvet.core.settings import default_models_dir
from callvet.voice.spoof.detector import backend_dir

__all__ = ["build", "is_built"]

FILES = ("cm.npz", "manifest.json")


def is_built(models_dir: Path) -> bool:
    d = backend_dir(models_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        return hashlib.sha256((d / "cm.npz").read_bytes()).hexdigest() == manifest.get("sha256")
    except (OSError, ValueError):
        return False


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    del force  # an intact trained artifact is never retrained here (see the module docstring)
    target = backend_dir(models_dir)
    if is_built(models_dir):
        return []
    shipped = default_models_dir()
    if Path(models_dir).resolve() != shipped.resolve() and is_built(shipped):
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(backend_dir(shipped) / name, target / name)
    else:
        from callvet.voice.spoof.ship import train_and_save

        train_and_save(target)
    return [target / name for name in FILES]
