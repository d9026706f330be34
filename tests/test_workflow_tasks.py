from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callvet.core.db import Database
from callvet.core.errors import InvalidInput
from callvet.sim.workflow import application, scripted_decider
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.products import DEFAULT_PRIORITY, PriorityConfig, priority

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_priority_formula_terms() -> None:
    cfg = DEFAULT_PRIORITY
    base = priority(cfg, amount=None, risk_score=None, due_at=None, created_at=T0, now=T0)
    assert base == 0
    assert priority(cfg, amount=9000, risk_score=None, due_at=None, created_at=T0, now=T0) == pytest.approx(
        10 * math.log10(10)
    )
    assert priority(cfg, amount=None, risk_score=0.5, due_at=None, created_at=T0, now=T0) == 20
    due = T0 + timedelta(hours=12)
    assert priority(cfg, amount=None, risk_score=None, due_at=due, created_at=T0, now=T0) == 15
    overdue = priority(
        cfg, amount=None, risk_score=None, due_at=T0 - timedelta(days=9), created_at=T0, now=T0
    )
    assert overdue == 60  # capped at twice the deadline weight
    waited = priority(
        cfg, amount=None, risk_score=None, due_at=None, created_at=T0 - timedelta(days=2), now=T0
    )
    assert waited == 10
    custom = PriorityConfig(amount_weight=0, risk_weight=100)
    assert priority(custom, amount=1e6, risk_score=0.9, due_at=None, created_at=T0, now=T0) == 90


def _rt(db: Database, clock: Clock) -> WorkflowRuntime:
    rt = WorkflowRuntime(db, decide=scripted_decider, clock=clock)
    rt.ensure_ready()
    return rt


def _refer(rt: WorkflowRuntime, i: int, requested: float) -> str:
    app = application(i, flagged=False, income=0, delinquencies=0, requested=requested)
    return str(rt.start("card_issuance", {"application": app}, actor="t")["instance_id"])


def test_assignment_least_loaded_with_skill_and_authority(db: Database) -> None:
    clock = Clock()
    rt = _rt(db, clock)
    rt.board.upsert_user("junior", role="approver", skills=["card"], max_amount=20000, actor="t")
    rt.board.upsert_user("senior", role="approver", skills=["card"], max_amount=500000, actor="t")
    rt.board.upsert_user("loans", role="approver", skills=["instalment"], actor="t")
    rt.board.upsert_user("away", role="approver", skills=["card"], active=False, actor="t")
    with pytest.raises(InvalidInput):
        rt.board.upsert_user("x", role="janitor", skills=[], actor="t")
    for i in range(4):
        _refer(rt, i, 10000)
    big = _refer(rt, 10, 80000)
    tasks = rt.board.list_open(role="approver")
    by_inst = {t["instance_id"]: t for t in tasks}
    assert by_inst[big]["assignee"] == "senior"  # only senior has the authority
    loads = {u["user_id"]: u["open_tasks"] for u in rt.board.list_users()}
    assert loads == {"junior": 2, "senior": 3, "loans": 0, "away": 0} or loads == {
        "junior": 3,
        "senior": 2,
        "loans": 0,
        "away": 0,
    }
    assert abs(loads["junior"] - loads["senior"]) <= 1
    assert [t["priority"] for t in tasks] == sorted((t["priority"] for t in tasks), reverse=True)
    assert tasks[0]["instance_id"] == big  # the larger amount ranks first


def test_unassigned_tasks_are_picked_up_later(db: Database) -> None:
    clock = Clock()
    rt = _rt(db, clock)
    iid = _refer(rt, 1, 10000)
    assert rt.board.list_open(role="approver")[0]["assignee"] is None
    rt.board.upsert_user("late", role="approver", skills=["card"], actor="t")
    stats = rt.tick()
    assert stats["assigned"] == 1
    assert rt.board.list_open(role="approver")[0]["assignee"] == "late"
    assert "task.assigned" in [e["kind"] for e in rt.summary(iid, with_events=True)["events"]]


def test_reminder_then_escalation_recorded_on_instance(db: Database) -> None:
    clock = Clock()
    rt = _rt(db, clock)
    rt.board.upsert_user("a1", role="approver", skills=["card"], actor="t")
    rt.board.upsert_user("a2", role="approver", skills=["card"], actor="t")
    iid = _refer(rt, 1, 10000)
    task = rt.board.list_open(role="approver")[0]
    first = task["assignee"]
    p0 = task["priority"]
    assert rt.tick()["reminded"] == 0
    clock.now = T0 + timedelta(hours=21)  # due after 24 h; reminder 4 h before
    stats = rt.tick()
    assert stats["reminded"] == 1 and stats["escalated"] == 0
    assert rt.tick()["reminded"] == 0  # once only
    clock.now = T0 + timedelta(hours=25)
    stats = rt.tick()
    assert stats["escalated"] == 1
    task = rt.board.list_open(role="approver")[0]
    assert task["assignee"] not in (None, first)
    assert task["priority"] > p0
    kinds = [e["kind"] for e in rt.summary(iid, with_events=True)["events"]]
    assert kinds.count("task.reminder") == 1 and kinds.count("task.escalated") == 1


def test_priority_config_is_live(db: Database) -> None:
    clock = Clock()
    rt = _rt(db, clock)
    _refer(rt, 1, 10000)
    before = rt.board.list_open(role="approver")[0]["priority"]
    cfg: dict[str, Any] = rt.config.get_raw("priority")[1]
    cfg["amount_weight"] = 100.0
    rt.config.set("priority", cfg, actor="risk:r")
    rt.tick()
    after = rt.board.list_open(role="approver")[0]["priority"]
    assert after > before
    with pytest.raises(InvalidInput):
        rt.config.set("priority", {"amount_unit": 0}, actor="risk:r")
