"""Channel-robust back end (LDA/WCCN + AS-norm); the trained back end is not implemented yet, so the
engine runs on plain cosine until it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["find_backend"]


def find_backend(encoder: Any, models_dir: Path) -> None:
    """No back end yet: the engine falls back to cosine."""
    return None
