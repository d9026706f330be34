"""``callvet db``: schema migrations (see :mod:`callvet.core.migrations` and docs/migrations.md)."""

from __future__ import annotations

import typer
from callvet._cli.common import fail
from callvet.core.db import Database
from callvet.core.errors import CallvetError

__all__ = ["register"]

db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


def _database() -> Database:
    from callvet._cli.common import announce
    from callvet.core.settings import get_settings

    settings = get_settings()
    announce(settings)
    settings.ensure_dirs()
    return Database(settings.database_url)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("heads", help="target revision (default: newest)")) -> None:
    """Migrate the database to the newest schema; adopts a database made by an older release."""
    from callvet.core.migrations import current, upgrade

    db = _database()
    try:
        before = current(db)
        after = upgrade(db, revision)
    except CallvetError as exc:
        raise fail(exc) from None
    finally:
        db.dispose()
    typer.echo(f"database at {after} (was {before or 'unversioned'})")


@db_app.command("current")
def show_current() -> None:
    """Print the database's migration revision and the newest one."""
    from callvet.core.migrations import current, head

    db = _database()
    try:
        typer.echo(f"current: {current(db) or 'unversioned'}\nhead: {head()}")
    finally:
        db.dispose()


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
