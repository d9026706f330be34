"""Supervision: every completed human approval and every limit change is checked against a rule catalogue.

The catalogue (:mod:`.rulebook`) is data: rules with a *violation* expression over a flat set of facts
(:mod:`.facts`), compiled into one JDM graph per kind (input -> one expression node per topic -> output)
and evaluated by zen-engine in a single call per check.

A violation becomes a finding in the rectification queue, due three days after the check; metrics are
coverage (checks / completed supervised actions), share rectified within three days, and overdue count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callvet.core import outbox
from callvet.core.audit import record
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.workflow.facts import gather_facts
from callvet.workflow.rulebook import KINDS, Catalogue, Rule, baseline_facts, catalogue, load_rules
from callvet.workflow.tables import wf_checks, wf_findings, wf_issuances, wf_tasks
from callvet.workflow.tasks import TaskStatus
from sqlalchemy import Connection, delete, func, insert, select, update

__all__ = [
    "KINDS",
    "RECTIFY_DAYS",
    "Catalogue",
    "Rule",
    "Supervisor",
    "baseline_facts",
    "catalogue",
    "load_rules",
]

RECTIFY_DAYS = 3


class Supervisor:
    """Checks, the rectification queue and its metrics; the only writer of checks and findings."""

    def __init__(self, db: Database, clock: Any) -> None:
        self.db = db
        self.clock = clock

    @property
    def catalogue(self) -> Catalogue:
        return catalogue()

    def facts(
        self,
        conn: Connection,
        *,
        kind: str,
        instance_id: str,
        data: dict[str, Any],
        reviewer_id: str | None,
        assignee: str | None,
        task_created_at: datetime | None,
    ) -> dict[str, Any]:
        """The facts the rules see (see :func:`.facts.gather_facts`), as of this supervisor's clock."""
        return gather_facts(
            conn,
            self.clock(),
            kind=kind,
            instance_id=instance_id,
            data=data,
            reviewer_id=reviewer_id,
            assignee=assignee,
            task_created_at=task_created_at,
        )

    def check(
        self,
        conn: Connection,
        *,
        kind: str,
        instance_id: str,
        task_id: str,
        data: dict[str, Any],
        actor: str,
        reviewer_id: str | None,
        assignee: str | None,
        task_created_at: datetime | None,
        review_level: int = 1,
    ) -> list[Rule]:
        """Check one completed action; idempotent per (instance, task): a replay records nothing twice.

        ``review_level`` is the user task's ``callvet:level`` (1 = first review); rules about the number
        of reviewers apply once the last required level is reached."""
        check_key = f"{instance_id}:{task_id}"
        if conn.execute(select(wf_checks.c.id).where(wf_checks.c.check_key == check_key)).first() is not None:
            return []
        facts = self.facts(
            conn,
            kind=kind,
            instance_id=instance_id,
            data=data,
            reviewer_id=reviewer_id,
            assignee=assignee,
            task_created_at=task_created_at,
        )
        facts["review_level"] = review_level
        cat = self.catalogue
        violated = cat.evaluate(kind, facts)
        now = self.clock()
        conn.execute(
            insert(wf_checks).values(
                check_key=check_key,
                instance_id=instance_id,
                kind=kind,
                at=now,
                rules_checked=len(cat.rules_of(kind)),
                violations=len(violated),
            )
        )
        if violated:
            conn.execute(
                insert(wf_findings),
                [
                    {
                        "check_key": check_key,
                        "instance_id": instance_id,
                        "rule_id": r.id,
                        "kind": kind,
                        "severity": r.severity,
                        "title": r.title,
                        "created_at": now,
                        "due_at": now + timedelta(days=RECTIFY_DAYS),
                        "status": "open",
                    }
                    for r in violated
                ],
            )
        outbox.add(conn, [outbox.event("supervision", "checked", instance_id, {
            "check_key": check_key, "instance_id": instance_id, "task_id": task_id, "kind": kind,
            "actor": actor, "rules_checked": len(cat.rules_of(kind)), "at": now.isoformat(),
            "violations": [{"rule_id": r.id, "severity": r.severity, "title": r.title} for r in violated],
        })])
        return violated

    def findings(
        self, *, status: str | None = None, instance_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        stmt = (
            select(wf_findings)
            .order_by(wf_findings.c.due_at, wf_findings.c.id)
            .limit(max(1, min(limit, 1000)))
        )
        if status:
            stmt = stmt.where(wf_findings.c.status == status)
        if instance_id:
            stmt = stmt.where(wf_findings.c.instance_id == instance_id)
        now = self.clock()
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for r in rows:
            due = r.due_at if r.due_at.tzinfo else r.due_at.replace(tzinfo=UTC)
            out.append(
                {
                    "id": r.id,
                    "instance_id": r.instance_id,
                    "rule_id": r.rule_id,
                    "kind": r.kind,
                    "severity": r.severity,
                    "title": r.title,
                    "status": r.status,
                    "due_at": due.isoformat(),
                    "overdue": r.status == "open" and due < now,
                    "note": r.note,
                    "rectified_by": r.rectified_by,
                }
            )
        return out

    def rectify(self, finding_id: int, *, actor: str, note: str) -> dict[str, Any]:
        if not note or not note.strip():
            raise InvalidInput("a rectification needs a note saying what was done", code="note_required")
        with self.db.begin() as conn:
            row = conn.execute(select(wf_findings.c.status).where(wf_findings.c.id == finding_id)).first()
            if row is None:
                raise NotFound(f"no finding {finding_id}")
            if row.status != "open":
                raise Conflict(f"finding {finding_id} is already {row.status}", code="finding_closed")
            conn.execute(
                update(wf_findings)
                .where(wf_findings.c.id == finding_id)
                .values(
                    status="rectified",
                    rectified_at=self.clock(),
                    rectified_by=actor,
                    note=note.strip()[:2000],
                )
            )
            record(conn, actor, "supervision.rectify", "wf_finding", finding_id, reason=note.strip()[:500])
            outbox.add(conn, [outbox.event("supervision", "rectified", str(finding_id), {
                "finding_id": finding_id, "rectified_by": actor})])
        return {"id": finding_id, "status": "rectified"}

    def metrics(self) -> dict[str, Any]:
        now = self.clock()
        with self.db.connect() as conn:
            human = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_tasks)
                    .where(wf_tasks.c.status == TaskStatus.COMPLETED.value, wf_tasks.c.supervise.is_not(None))
                ).scalar()
                or 0
            )
            reviewed = select(wf_tasks.c.instance_id).where(
                wf_tasks.c.status == TaskStatus.COMPLETED.value, wf_tasks.c.supervise.is_not(None)
            )
            auto = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_issuances)
                    .where(
                        wf_issuances.c.kind == "limit_changed", wf_issuances.c.instance_id.not_in(reviewed)
                    )
                ).scalar()
                or 0
            )
            checked = conn.execute(select(func.count()).select_from(wf_checks)).scalar() or 0
            with_findings = (
                conn.execute(
                    select(func.count()).select_from(wf_checks).where(wf_checks.c.violations > 0)
                ).scalar()
                or 0
            )
            total = conn.execute(select(func.count()).select_from(wf_findings)).scalar() or 0
            open_ = (
                conn.execute(
                    select(func.count()).select_from(wf_findings).where(wf_findings.c.status == "open")
                ).scalar()
                or 0
            )
            overdue = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_findings)
                    .where(wf_findings.c.status == "open", wf_findings.c.due_at < now)
                ).scalar()
                or 0
            )
            rectified = conn.execute(
                select(wf_findings.c.created_at, wf_findings.c.rectified_at).where(
                    wf_findings.c.status == "rectified"
                )
            ).all()
        in_time = sum(1 for r in rectified if r.rectified_at - r.created_at <= timedelta(days=RECTIFY_DAYS))
        completed = int(human) + int(auto)
        return {
            "completed_actions": completed,
            "checked": int(checked),
            "coverage": round(min(checked / completed, 1.0), 4) if completed else None,
            "checks_with_findings": int(with_findings),
            "findings": int(total),
            "open": int(open_),
            "overdue": int(overdue),
            "rectified": len(rectified),
            "rectified_within_3_days": in_time,
            "rectified_within_3_days_rate": round(in_time / len(rectified), 4) if rectified else None,
            "rules": {k: len(self.catalogue.rules_of(k)) for k in KINDS},
        }

    def erase(self, conn: Connection, instance_id: str) -> dict[str, int]:
        """Delete an erased instance's findings and checks; the numbers deleted, by table."""
        return {
            table.name: int(conn.execute(delete(table).where(table.c.instance_id == instance_id)).rowcount)
            for table in (wf_findings, wf_checks)
        }
