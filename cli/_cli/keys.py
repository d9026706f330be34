"""``callvet keys``: create, list and revoke API keys."""

from __future__ import annotations

import typer
from callvet._cli.common import fail, open_db
from callvet.core import auth
from callvet.core.errors import CallvetError

__all__ = ["register"]

keys = typer.Typer(help="API keys and roles (admin, analyst, robot, auditor, approver, risk_officer).",
                   no_args_is_help=True)


@keys.command("create")
def create(
    role: str = typer.Option(..., "--role", help="admin|analyst|robot|auditor|approver|risk_officer"),
    label: str = typer.Option("", "--label", help="who or what holds the key"),
) -> None:
    """Print a new key (shown once; only its hash is stored)."""
    try:
        typer.echo(auth.create_key(open_db(), role, label))
    except CallvetError as exc:
        raise fail(exc) from None


@keys.command("list")
def list_() -> None:
    """List keys (ids, roles, labels; never secrets)."""
    for k in auth.list_keys(open_db()):
        state = "revoked" if k["revoked_at"] else "active"
        typer.echo(f"{k['key_id']}\t{k['role']}\t{state}\t{k['label']}")


@keys.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key by id."""
    try:
        auth.revoke_key(open_db(), key_id)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")
