"""CLI commands of this part; filled in by the part that owns them."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    return None
