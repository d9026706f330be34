"""Helpers shared by CLI modules: the process's services, the database, error exit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from callvet.core.db import Database
from callvet.core.errors import CallvetError
from callvet.core.settings import Settings, get_settings, redact_url, resolve_data_dir

if TYPE_CHECKING:
    from callvet.services import Services

__all__ = ["announce", "fail", "open_db", "services"]


def announce(settings: Settings) -> None:
    """Say on stderr which database (password redacted) and data directory a command works on, and
    why that one: a command run from an unexpected place must not quietly work on another store."""
    typer.echo(f"callvet: database {redact_url(settings.database_url)} (data dir {settings.data_dir}, "
               f"from {resolve_data_dir().source})", err=True)


def open_db() -> Database:
    """The database alone, for commands that need no other service (keys, migrations, records)."""
    settings = get_settings()
    announce(settings)
    settings.ensure_dirs()
    db = Database(settings.database_url)
    db.create_schema()
    return db


def services() -> Services:
    """The composition root for one command (a command is one process: call this once per command).

    Not cached here: the settings come from the environment each time, so commands run in one
    process (tests, scripts) each see their own. Imported on first use, not at module import: the
    container pulls in every part (ONNX runtime, FAISS ...), and ``callvet --help`` or ``callvet keys
    list`` should not pay for that."""
    from callvet.services import open_services

    settings = get_settings()
    announce(settings)
    return open_services(settings)


def fail(exc: CallvetError) -> typer.Exit:
    typer.secho(f"error [{exc.code}]: {exc.message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)
