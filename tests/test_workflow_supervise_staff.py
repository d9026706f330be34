"""The staff register follows the console's users: a new approver is known to supervision, a disabled
one is inactive; the register change commits with the account and is audited (real DB, both back ends)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from callvet.console.users import UserStore
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.errors import InvalidInput
from callvet.workflow.supervise import Supervisor, baseline_facts, catalogue
from callvet.workflow.tables import wf_users
from sqlalchemy import select

PASSWORD = "correct horse battery staple 11"


def _findings(db: Database, reviewer: str) -> set[str]:
    """The critical approver-authority rules an approval of a baseline card issuance by ``reviewer``
    violates, with the reviewer facts read from the register as supervision reads them."""
    sup = Supervisor(db, lambda: datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    with db.connect() as conn:
        facts = sup.facts(conn, kind="issuance", instance_id="i-1", data={}, reviewer_id=reviewer,
                          assignee=reviewer, task_created_at=None)
    keys = ("approver", "approver_known", "approver_active", "approver_role", "approver_max",
            "approver_skills")
    merged = {**baseline_facts("issuance"), **{k: facts[k] for k in keys}}
    return {r.id for r in catalogue().evaluate("issuance", merged) if r.severity == "critical"}


def _row(db: Database, user_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(select(wf_users).where(wf_users.c.user_id == user_id)).first()


def test_new_approver_is_registered_and_disabling_deactivates(db: Database) -> None:
    store = UserStore(db)
    assert "ISS-AUT-001" in _findings(db, "alice")  # not yet a user: unknown to supervision
    out = store.create("alice", "approver", PASSWORD, actor="admin:user:root",
                       staff={"name": "Alice Reviewer", "max_amount": 200000.0})
    assert out["staff_register"] is True
    row = _row(db, "alice")
    assert row.role == "approver" and row.active and row.name == "Alice Reviewer"
    assert sorted(row.skills) == ["card", "instalment", "limit"] and row.max_amount == 200000.0
    assert _findings(db, "alice") == set()
    entry = audit.query(db, action="workflow.staff.register")[0]
    assert entry["target_id"] == "alice" and entry["actor"] == "admin:user:root"

    store.disable("alice", actor="admin:user:root", reason="left the bank")
    assert _row(db, "alice").active is False
    assert _findings(db, "alice") == {"ISS-AUT-002"}
    entry = audit.query(db, action="workflow.staff.deregister")[0]
    assert entry["target_id"] == "alice" and entry["reason"] == "left the bank"


def test_roles_that_work_no_tasks_stay_out(db: Database) -> None:
    out = UserStore(db).create("audrey", "auditor", PASSWORD)
    assert out["staff_register"] is False and _row(db, "audrey") is None
    UserStore(db).disable("audrey", reason="test")
    assert audit.query(db, action="workflow.staff.deregister") == []


@pytest.mark.parametrize("staff", [{"skills": ["cards"]}, {"max_amount": 0.0}])
def test_bad_register_values_create_nothing(db: Database, staff: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        UserStore(db).create("bob", "risk_officer", PASSWORD, staff=staff)
    assert UserStore(db).list() == [] and _row(db, "bob") is None
    assert audit.query(db, action="console.user.create") == []
