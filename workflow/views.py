"""Read models of workflow instances: the JSON the API and the CLI show (lists, one instance's record).

Reads only; nothing here writes or advances an instance, so a view can never change what it shows.
"""

from __future__ import annotations

from typing import Any

from callvet.core.db import Database
from callvet.core.errors import InvalidInput
from callvet.workflow.codec import aware
from callvet.workflow.repository import InstanceRepository
from callvet.workflow.status import InstanceStatus
from callvet.workflow.tables import wf_events, wf_instances
from callvet.workflow.tasks import TaskBoard
from sqlalchemy import select

__all__ = ["InstanceViews"]


def _iso(dt: Any) -> str:
    return aware(dt).isoformat()  # type: ignore[union-attr]


class InstanceViews:
    def __init__(self, db: Database, repo: InstanceRepository, board: TaskBoard) -> None:
        self.db = db
        self.repo = repo
        self.board = board

    def list_instances(
        self, *, status: str | None = None, process_key: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first; ``status`` one of running, waiting, completed, failed."""
        if status is not None and status not in {s.value for s in InstanceStatus}:
            raise InvalidInput(f"unknown status {status!r}", code="invalid_status")
        c = wf_instances.c
        stmt = (
            select(c.id, c.process_key, c.version, c.status, c.created_at, c.updated_at)
            .order_by(c.created_at.desc())
            .limit(max(1, min(limit, 1000)))
        )
        if status is not None:
            stmt = stmt.where(c.status == status)
        if process_key is not None:
            stmt = stmt.where(c.process_key == process_key)
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            {
                "instance_id": r.id,
                "process_key": r.process_key,
                "version": r.version,
                "status": r.status,
                "created_at": _iso(r.created_at),
                "updated_at": _iso(r.updated_at),
            }
            for r in rows
        ]

    def waiting_for(self, instance_id: str) -> list[str]:
        """Names of the messages the instance waits for (e.g. ``investigation_result``)."""
        inst = self.repo.load(instance_id)
        return sorted({e.name for e in inst.wf.waiting_events() if e.event_type == "MessageEventDefinition"})

    def summary(self, instance_id: str, *, with_events: bool = False) -> dict[str, Any]:
        """Status and error; ``with_events`` adds data, times, events, tasks and ``waiting_for``."""
        with self.db.connect() as conn:
            row = self.repo.row(conn, instance_id)
            out: dict[str, Any] = {
                "instance_id": row.id,
                "process_key": row.process_key,
                "version": row.version,
                "status": row.status,
                "error": row.error,
                "next_timer_at": _iso(row.next_timer_at) if row.next_timer_at else None,
            }
            if with_events:
                out["data"] = row.data
                out["created_at"] = _iso(row.created_at)
                out["updated_at"] = _iso(row.updated_at)
                evs = conn.execute(
                    select(wf_events).where(wf_events.c.instance_id == instance_id).order_by(wf_events.c.id)
                ).all()
                out["events"] = [
                    {"at": _iso(e.at), "kind": e.kind, "element": e.element, "details": e.details}
                    for e in evs
                ]
                out["tasks"] = self.board.for_instance(conn, instance_id)
        if with_events and out["status"] == InstanceStatus.WAITING.value:
            out["waiting_for"] = self.waiting_for(instance_id)
        return out
