"""Settings from ``CALLVET_*`` environment variables with embedded defaults.

Everything has a default so that ``callvet serve`` runs on a fresh checkout: a SQLite file and the FAISS
index live under the data directory (``./var``), models under ``models/artifacts`` of the checkout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["Settings", "default_models_dir", "get_settings"]


def default_models_dir() -> Path:
    import callvet.models

    return Path(callvet.models.__file__).resolve().parent / "artifacts"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("CALLVET_DATA_DIR", "var")).resolve())
    database_url: str = ""
    models_dir: Path = field(
        default_factory=lambda: Path(os.environ["CALLVET_MODELS_DIR"]).resolve()
        if "CALLVET_MODELS_DIR" in os.environ
        else default_models_dir()
    )
    max_upload_bytes: int = field(
        default_factory=lambda: int(_env("CALLVET_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024)))
    )
    encoder: str = field(default_factory=lambda: _env("CALLVET_ENCODER", "ge2e"))
    # issue 9: request bodies other than uploads (JSON, XML); uploads and bulk routes use max_upload_bytes.
    max_body_bytes: int = field(default_factory=lambda: int(_env("CALLVET_MAX_BODY_BYTES", str(1 << 20))))
    # issue 16 (portrait): the bank directory of Parquet tables and tags the portrait routes serve.
    portrait_bank_dir: str = field(default_factory=lambda: _env("CALLVET_PORTRAIT_BANK_DIR", ""))

    def __post_init__(self) -> None:
        if not self.database_url:
            url = os.environ.get("CALLVET_DATABASE_URL") or f"sqlite:///{self.data_dir / 'callvet.db'}"
            object.__setattr__(self, "database_url", url)

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
