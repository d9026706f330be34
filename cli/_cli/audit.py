"""``callvet audit``: read the audit log from a terminal (who did what to which record, when, why).

Filters are exact or a trailing-``*`` prefix (``--action 'blacklist.*'``); output is newest first, at
most ``--limit`` rows (bounded: the log of a busy day is millions of rows), and paged by id: the last
line on stderr says which ``--before-id`` shows the next page, so a page never shifts when new rows
arrive while someone reads.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from callvet._cli.common import fail, open_db
from callvet.core.errors import CallvetError, InvalidInput
from callvet.core.tables import audit_log
from sqlalchemy import ColumnElement, Select, select

__all__ = ["parse_since", "query", "register"]

MAX_LIMIT = 1000
_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` ago, or an ISO date/time (UTC when it has no offset)."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"--since {value!r}: give an ISO date/time (2026-12-03, 2026-12-03T09:00) or "
                           f"an age such as 30m, 24h, 7d", code="invalid_since") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _match(col: Any, value: str) -> ColumnElement[bool]:
    if value.endswith("*"):
        prefix = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return col.like(prefix + "%", escape="\\")  # type: ignore[no-any-return]
    return col == value  # type: ignore[no-any-return]


def query(*, actor: str | None = None, action: str | None = None, target: str | None = None,
          since: datetime | None = None, before_id: int | None = None, limit: int = 50) -> Select[Any]:
    """The page's statement: newest first, filtered, at most ``limit`` (1..1000) rows.

    ``target`` is ``TYPE`` or ``TYPE:ID`` (``blacklist_identity:7``, ``console_user:alice``)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"--limit must be 1..{MAX_LIMIT}, got {limit}", code="invalid_limit")
    c = audit_log.c
    stmt = select(audit_log).order_by(c.id.desc()).limit(limit)
    if actor:
        stmt = stmt.where(_match(c.actor, actor))
    if action:
        stmt = stmt.where(_match(c.action, action))
    if target:
        ttype, _, tid = target.partition(":")
        stmt = stmt.where(_match(c.target_type, ttype))
        if tid:
            stmt = stmt.where(_match(c.target_id, tid))
    if since is not None:
        stmt = stmt.where(c.at >= since)
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    return stmt


def audit(
    actor: str | None = typer.Option(None, "--actor", help="who, e.g. 'cli:alice' or 'approver:*'"),
    action: str | None = typer.Option(None, "--action", help="what, e.g. 'blacklist.*'"),
    target: str | None = typer.Option(None, "--target", help="TYPE or TYPE:ID, e.g. console_user:alice"),
    since: str | None = typer.Option(None, "--since", help="ISO date/time or age: 30m, 24h, 7d"),
    before_id: int | None = typer.Option(None, "--before-id", min=1, help="next page: rows older than this"),
    limit: int = typer.Option(50, "--limit", help=f"rows per page, 1..{MAX_LIMIT}"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one entry a line"),
) -> None:
    """Read the audit log, newest first, filtered and paged (see --before-id)."""
    try:
        stmt = query(actor=actor, action=action, target=target,
                     since=parse_since(since) if since else None, before_id=before_id, limit=limit)
        db = open_db()
    except CallvetError as exc:
        raise fail(exc) from None
    try:
        with db.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt).all()]
    finally:
        db.dispose()
    for r in rows:
        at = r["at"].replace(tzinfo=r["at"].tzinfo or UTC).isoformat(timespec="seconds")
        if as_json:
            typer.echo(json.dumps({**r, "at": at}, default=str, ensure_ascii=False))
        else:
            details = json.dumps(r["details"], default=str, ensure_ascii=False) if r["details"] else ""
            typer.echo(f"{r['id']}\t{at}\t{r['actor']}\t{r['action']}\t{r['target_type']}:{r['target_id']}"
                       f"\t{r['reason']}\t{details}".rstrip("\t"))
    if len(rows) == limit:
        typer.echo(f"more: --before-id {rows[-1]['id']}", err=True)
    elif not rows:
        typer.echo("no audit entries match", err=True)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
