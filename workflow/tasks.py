"""Human tasks: creation from the engine's ready user tasks, priority, assignment, reminders, escalation.

A task row is written in the same transaction as the instance state that made it ready, and is
assigned there and then to the least-loaded active person of the lane's role who holds the task's
skill and whose authority (``max_amount``) covers the amount -- so assignment latency is one commit.
Tasks nobody can take stay unassigned and are retried by every :meth:`TaskBoard.housekeeping` round,
which also refreshes priorities (the formula in :class:`callvet.workflow.products.PriorityConfig`
depends on time), sends a reminder ``reminder_before_hours`` before the due time and escalates after it
(reassigning to another person of the role). Reminders and escalations are instance events.

The board is the only writer of ``wf_tasks`` (the runtime completes, cancels and erases task rows through
it), so every status a row takes is a :class:`TaskStatus`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from callvet.core.audit import record
from callvet.core.auth import Role
from callvet.core.db import Database
from callvet.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from callvet.workflow.products import ConfigStore, PriorityConfig, priority
from callvet.workflow.repository import EventLog
from callvet.workflow.tables import wf_tasks, wf_users
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Connection, delete, func, insert, select, update

__all__ = ["TaskBoard", "TaskStatus"]


class TaskStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _amount(data: dict[str, Any]) -> float | None:
    for key in ("amount", "credit_limit"):
        v = data.get(key)
        if isinstance(v, int | float) and v > 0:
            return float(v)
    app = data.get("application")
    if isinstance(app, dict) and isinstance(app.get("requested_limit"), int | float):
        return float(app["requested_limit"])
    return None


def _task_dict(r: Any) -> dict[str, Any]:
    return {
        "task_id": r.task_id,
        "instance_id": r.instance_id,
        "name": r.name,
        "element": r.element,
        "role": r.role,
        "skill": r.skill,
        "priority": r.priority,
        "amount": r.amount,
        "risk_score": r.risk_score,
        "due_at": _aware(r.due_at).isoformat() if r.due_at else None,  # type: ignore[union-attr]
        "created_at": _aware(r.created_at).isoformat(),  # type: ignore[union-attr]
        "assignee": r.assignee,
        "status": r.status,
    }


class TaskBoard:
    def __init__(
        self,
        db: Database,
        config: ConfigStore,
        clock: Callable[[], datetime],
        events: EventLog | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.events = events or EventLog(clock)

    def _priority_cfg(self, conn: Connection | None = None) -> PriorityConfig:
        return self.config.get("priority", conn)  # type: ignore[no-any-return]

    # ---- people --------------------------------------------------------------------------------
    def upsert_user(
        self,
        user_id: str,
        *,
        role: str,
        skills: list[str],
        name: str = "",
        max_amount: float | None = None,
        active: bool = True,
        actor: str,
    ) -> dict[str, Any]:
        if role not in {r.value for r in Role}:
            raise InvalidInput(f"unknown role {role!r}", code="unknown_role")
        if not user_id or len(user_id) > 100:
            raise InvalidInput("user_id must be 1-100 characters", code="invalid_user")
        if not isinstance(skills, list) or not all(isinstance(s, str) and s for s in skills):
            raise InvalidInput("skills must be a list of names", code="invalid_user")
        values = {
            "name": name,
            "role": role,
            "skills": sorted(set(skills)),
            "max_amount": max_amount,
            "active": active,
        }
        with self.db.begin() as conn:
            exists = conn.execute(select(wf_users.c.user_id).where(wf_users.c.user_id == user_id)).first()
            if exists:
                conn.execute(update(wf_users).where(wf_users.c.user_id == user_id).values(**values))
            else:
                conn.execute(insert(wf_users).values(user_id=user_id, **values))
            record(conn, actor, "workflow.user.upsert", "wf_user", user_id, details=values)
        return {"user_id": user_id, **values}

    def list_users(self) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(wf_users).order_by(wf_users.c.user_id)).all()
            loads = dict(
                conn.execute(
                    select(wf_tasks.c.assignee, func.count())
                    .where(wf_tasks.c.status == TaskStatus.OPEN.value)
                    .group_by(wf_tasks.c.assignee)
                ).all()
            )
        return [
            {
                "user_id": r.user_id,
                "name": r.name,
                "role": r.role,
                "skills": r.skills,
                "max_amount": r.max_amount,
                "active": r.active,
                "open_tasks": int(loads.get(r.user_id, 0)),
            }
            for r in rows
        ]

    def _pick(
        self, conn: Connection, role: str, skill: str | None, amount: float | None, exclude: str | None = None
    ) -> str | None:
        load = (
            select(func.count())
            .where(wf_tasks.c.assignee == wf_users.c.user_id, wf_tasks.c.status == TaskStatus.OPEN.value)
            .scalar_subquery()
            .label("load")
        )
        rows = conn.execute(
            select(wf_users.c.user_id, wf_users.c.skills, wf_users.c.max_amount, load).where(
                wf_users.c.role == role, wf_users.c.active.is_(True)
            )
        ).all()
        best: tuple[int, str] | None = None
        for r in rows:
            if r.user_id == exclude:
                continue
            if skill and skill not in (r.skills or []):
                continue
            if amount is not None and r.max_amount is not None and amount > r.max_amount:
                continue
            cand = (int(r.load), r.user_id)
            if best is None or cand < best:
                best = cand
        return best[1] if best else None

    def _event(self, conn: Connection, iid: str, kind: str, element: str, details: dict[str, Any]) -> None:
        self.events.append(conn, iid, kind, element, details)

    # ---- the runtime's writes ----------------------------------------------------------------------
    def open_task(self, task_id: str, role: str | None) -> Any:
        """The row of an open task the caller's ``role`` may complete (None: admin, any role)."""
        with self.db.connect() as conn:
            row = conn.execute(select(wf_tasks).where(wf_tasks.c.task_id == task_id)).first()
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        if row.status != TaskStatus.OPEN.value:
            raise Conflict(f"task {task_id} is already {row.status}", code="task_not_open")
        if role is not None and row.role != role:
            raise Forbidden(f"task {task_id} needs role {row.role!r}")
        return row

    def complete(self, conn: Connection, task_id: str, actor: str) -> None:
        """Mark an open task completed in the caller's transaction; 409 if someone was first."""
        done = conn.execute(
            update(wf_tasks)
            .where(wf_tasks.c.task_id == task_id, wf_tasks.c.status == TaskStatus.OPEN.value)
            .values(status=TaskStatus.COMPLETED.value, completed_at=self.clock(), completed_by=actor)
        )
        if done.rowcount != 1:
            raise Conflict(f"task {task_id} is already completed", code="task_not_open")

    def cancel_open(self, conn: Connection, iid: str) -> None:
        """Cancel every open task of an instance that failed or was cancelled (no events: the
        instance's own ``instance.failed`` event says why)."""
        conn.execute(
            update(wf_tasks)
            .where(wf_tasks.c.instance_id == iid, wf_tasks.c.status == TaskStatus.OPEN.value)
            .values(status=TaskStatus.CANCELLED.value, completed_at=self.clock())
        )

    def erase(self, conn: Connection, iid: str) -> int:
        """Delete an erased instance's task rows; the number deleted."""
        return int(conn.execute(delete(wf_tasks).where(wf_tasks.c.instance_id == iid)).rowcount)

    # ---- engine side -----------------------------------------------------------------------------
    def sync(self, conn: Connection, iid: str, meta: dict[str, Any], wf: Any, *, finished: bool) -> None:
        """Make the open task rows of ``iid`` match the workflow's READY user tasks."""
        ready = {} if finished else {str(t.id): t for t in wf.get_tasks(state=TaskState.READY, manual=True)}
        known = dict(
            conn.execute(
                select(wf_tasks.c.task_id, wf_tasks.c.status).where(wf_tasks.c.instance_id == iid)
            ).all()
        )
        for tid, status in known.items():
            if status == TaskStatus.OPEN.value and tid not in ready:
                conn.execute(
                    update(wf_tasks)
                    .where(wf_tasks.c.task_id == tid)
                    .values(status=TaskStatus.CANCELLED.value, completed_at=self.clock())
                )
                self._event(conn, iid, "task.cancelled", "", {"task_id": tid})
        if not any(tid not in known for tid in ready):
            return
        cfg = self._priority_cfg(conn)
        for tid, t in ready.items():
            if tid in known:
                continue
            spec = t.task_spec
            m = meta["elements"].get(spec.bpmn_id) or {}
            now = self.clock()
            role = m.get("role") or spec.lane or Role.APPROVER.value
            amount = _amount(t.data)
            risk = t.data.get("risk_score") if isinstance(t.data.get("risk_score"), int | float) else None
            due = now + timedelta(hours=float(m.get("due_hours") or 24))
            assignee = self._pick(conn, role, m.get("skill"), amount)
            assigned_at = self.clock() if assignee else None
            conn.execute(
                insert(wf_tasks).values(
                    task_id=tid,
                    instance_id=iid,
                    element=spec.bpmn_id,
                    name=m.get("name") or spec.bpmn_name or "",
                    role=role,
                    skill=m.get("skill"),
                    supervise=m.get("supervise"),
                    amount=amount,
                    risk_score=risk,
                    due_at=due,
                    created_at=now,
                    priority=priority(
                        cfg, amount=amount, risk_score=risk, due_at=due, created_at=now, now=now
                    ),
                    assignee=assignee,
                    assigned_at=assigned_at,
                    status=TaskStatus.OPEN.value,
                )
            )
            self._event(conn, iid, "task.created", spec.bpmn_id, {"task_id": tid, "role": role})
            if assignee:
                self._event(conn, iid, "task.assigned", spec.bpmn_id, {"task_id": tid, "assignee": assignee})

    def housekeeping(self) -> dict[str, int]:
        """Refresh priorities; remind, escalate and (re)assign open tasks. One transaction per task."""
        now = self.clock()
        cfg = self._priority_cfg()
        remind_before = timedelta(hours=cfg.reminder_before_hours)
        stats = {"reminded": 0, "escalated": 0, "assigned": 0, "reprioritised": 0}
        with self.db.connect() as conn:
            rows = conn.execute(select(wf_tasks).where(wf_tasks.c.status == TaskStatus.OPEN.value)).all()
        for r in rows:
            due = _aware(r.due_at)
            created = _aware(r.created_at)
            assert created is not None
            with self.db.begin() as conn:
                values: dict[str, Any] = {}
                if due is not None and r.reminded_at is None and due - remind_before <= now < due:
                    values["reminded_at"] = now
                    self._event(
                        conn,
                        r.instance_id,
                        "task.reminder",
                        r.element,
                        {"task_id": r.task_id, "assignee": r.assignee, "due_at": due.isoformat()},
                    )
                    stats["reminded"] += 1
                if due is not None and r.escalated_at is None and now >= due:
                    values["escalated_at"] = now
                    other = self._pick(conn, r.role, r.skill, r.amount, exclude=r.assignee)
                    if other:
                        values["assignee"], values["assigned_at"] = other, now
                    self._event(
                        conn,
                        r.instance_id,
                        "task.escalated",
                        r.element,
                        {"task_id": r.task_id, "from": r.assignee, "to": other or r.assignee},
                    )
                    stats["escalated"] += 1
                if r.assignee is None and "assignee" not in values:
                    who = self._pick(conn, r.role, r.skill, r.amount)
                    if who:
                        values["assignee"], values["assigned_at"] = who, now
                        self._event(
                            conn,
                            r.instance_id,
                            "task.assigned",
                            r.element,
                            {"task_id": r.task_id, "assignee": who},
                        )
                        stats["assigned"] += 1
                p = priority(
                    cfg, amount=r.amount, risk_score=r.risk_score, due_at=due, created_at=created, now=now
                )
                if p != r.priority:
                    values["priority"] = p
                    stats["reprioritised"] += 1
                if values:
                    conn.execute(
                        update(wf_tasks)
                        .where(wf_tasks.c.task_id == r.task_id, wf_tasks.c.status == TaskStatus.OPEN.value)
                        .values(**values)
                    )
        return stats

    # ---- reading ---------------------------------------------------------------------------------
    def list_open(
        self, *, role: str | None, assignee: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        stmt = select(wf_tasks).where(wf_tasks.c.status == TaskStatus.OPEN.value)
        if role is not None:
            stmt = stmt.where(wf_tasks.c.role == role)
        if assignee is not None:
            stmt = stmt.where(wf_tasks.c.assignee == assignee)
        stmt = stmt.order_by(wf_tasks.c.priority.desc(), wf_tasks.c.created_at, wf_tasks.c.task_id)
        stmt = stmt.limit(max(1, min(limit, 1000)))
        with self.db.connect() as conn:
            return [_task_dict(r) for r in conn.execute(stmt).all()]

    def get(self, task_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            r = conn.execute(select(wf_tasks).where(wf_tasks.c.task_id == task_id)).first()
        if r is None:
            raise NotFound(f"no task {task_id!r}")
        return _task_dict(r)

    def for_instance(self, conn: Connection, iid: str) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(wf_tasks).where(wf_tasks.c.instance_id == iid).order_by(wf_tasks.c.created_at)
        )
        return [_task_dict(r) for r in rows.all()]
