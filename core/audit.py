"""The audit log: who did what to which record, when and why.

``record`` takes the caller's open connection so the audit row commits or rolls back with the change it
describes; an audited change can never land without its audit row, nor the reverse.
"""

from __future__ import annotations

from typing import Any

from callvet.core.db import Database, utcnow
from callvet.core.tables import audit_log
from sqlalchemy import Connection, insert, select

__all__ = ["query", "record"]

# One statement object with bound parameters: SQLAlchemy compiles it once, where ``insert().values(...)``
# built per call costs a cache-key walk each time (about a quarter of a millisecond per audit row).
_INSERT = insert(audit_log)


def record(
    conn: Connection,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | int,
    *,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        _INSERT,
        {"at": utcnow(), "actor": actor, "action": action, "target_type": target_type,
         "target_id": str(target_id), "reason": reason or "", "details": details or {}},
    )


def query(
    db: Database,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, 1000)))
    if target_type:
        stmt = stmt.where(audit_log.c.target_type == target_type)
    if target_id:
        stmt = stmt.where(audit_log.c.target_id == target_id)
    if action:
        stmt = stmt.where(audit_log.c.action == action)
    if before_id:
        stmt = stmt.where(audit_log.c.id < before_id)
    with db.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["at"] = d["at"].isoformat() if d["at"] else None
        out.append(d)
    return out
