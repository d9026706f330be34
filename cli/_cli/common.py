"""Helpers shared by CLI modules."""

from __future__ import annotations

import typer
from callvet.core.db import Database
from callvet.core.errors import CallvetError
from callvet.core.settings import get_settings

__all__ = ["fail", "open_db"]


def open_db() -> Database:
    settings = get_settings()
    settings.ensure_dirs()
    db = Database(settings.database_url)
    db.create_schema()
    return db


def fail(exc: CallvetError) -> typer.Exit:
    typer.secho(f"error [{exc.code}]: {exc.message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)
