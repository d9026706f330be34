from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from callvet.core.db import Database
from callvet.core.errors import Conflict, Forbidden, InvalidInput
from callvet.sim.workflow import application as sim_application
from callvet.sim.workflow import scripted_decider
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.tables import wf_effects, wf_issuances
from sqlalchemy import func, select

APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())


def application(i: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("delinquencies", 0)
    return sim_application(i, **kw)


def _rt(db: Database, decide: Any = scripted_decider) -> WorkflowRuntime:
    rt = WorkflowRuntime(db, decide=decide)
    rt.ensure_ready()
    rt.board.upsert_user(
        "alice", role="approver", skills=["card", "instalment"], max_amount=100000, actor="t"
    )
    rt.board.upsert_user("bob", role="approver", skills=["card"], max_amount=100000, actor="t")
    rt.board.upsert_user("rita", role="risk_officer", skills=["card", "instalment", "limit"], actor="t")
    return rt


def _count(db: Database, table: Any, **where: Any) -> int:
    stmt = select(func.count()).select_from(table)
    for k, v in where.items():
        stmt = stmt.where(table.c[k] == v)
    with db.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def _kinds(rt: WorkflowRuntime, iid: str) -> list[str]:
    return [e["kind"] for e in rt.summary(iid, with_events=True)["events"]]


def test_card_auto_approve_path(db: Database) -> None:
    rt = _rt(db)
    s = rt.start("card_issuance", {"application": application(1, flagged=False, requested=20000)}, actor="t")
    assert s["status"] == "completed"
    full = rt.summary(s["instance_id"], with_events=True)
    assert full["data"]["outcome"] == "card_issued"
    assert _count(db, wf_issuances, instance_id=s["instance_id"]) == 1
    assert "service.completed" in _kinds(rt, s["instance_id"])


def test_card_investigation_then_human_review(db: Database) -> None:
    rt = _rt(db)
    s = rt.start("card_issuance", {"application": APP}, actor="analyst:t")
    iid = s["instance_id"]
    assert s["status"] == "waiting"
    with pytest.raises(Conflict):
        rt.deliver_message(iid, "some_other_message", {}, actor="robot")
    payload = {
        "investigation": {
            "voiceprint_alarm": False,
            "investigator": "robot-1",
            "questionnaire": {"verdict": "inconclusive", "risk_score": 0.4},
        }
    }
    s = rt.deliver_message(iid, "investigation_result", payload, actor="robot")
    assert s["status"] == "waiting"
    with pytest.raises(Conflict):  # the message was consumed: delivering it again is refused
        rt.deliver_message(iid, "investigation_result", payload, actor="robot")
    tasks = rt.board.list_open(role="approver")
    assert len(tasks) == 1 and tasks[0]["instance_id"] == iid
    task = tasks[0]
    assert task["assignee"] in ("alice", "bob") and task["name"] == "Review referred application"
    with pytest.raises(Forbidden):
        rt.complete_task(task["task_id"], {"review_decision": "approve"}, actor="x", role="risk_officer")
    s = rt.complete_task(
        task["task_id"],
        {"review_decision": "approve", "documents": ["id_card", "income_proof"]},
        actor="approver:alice",
        role="approver",
        reviewer_id="alice",
    )
    assert s["status"] == "completed"
    with pytest.raises(Conflict):
        rt.complete_task(
            task["task_id"], {"review_decision": "approve"}, actor="approver:alice", role="approver"
        )
    kinds = _kinds(rt, iid)
    for k in ("message.received", "task.created", "task.assigned", "task.completed", "instance.completed"):
        assert k in kinds
    assert rt.summary(iid, with_events=True)["data"]["outcome"] == "card_issued"
    assert rt.supervisor.metrics()["checked"] == 1


def test_card_declined_by_reviewer_and_by_engine(db: Database) -> None:
    rt = _rt(db)
    s = rt.start("card_issuance", {"application": application(2, delinquencies=4)}, actor="t")
    assert s["status"] == "completed"
    assert rt.summary(s["instance_id"], with_events=True)["data"]["outcome"] == "declined"
    assert _count(db, wf_issuances, instance_id=s["instance_id"]) == 0
    s = rt.start("card_issuance", {"application": application(3, flagged=False, income=0)}, actor="t")
    task = rt.board.list_open(role="approver")[0]
    s = rt.complete_task(
        task["task_id"], {"review_decision": "decline"}, actor="a", role=None, reviewer_id="bob"
    )
    assert rt.summary(s["instance_id"], with_events=True)["data"]["outcome"] == "declined"


def test_invalid_start_is_rejected_and_stores_nothing(db: Database) -> None:
    rt = _rt(db)
    with pytest.raises(InvalidInput):
        rt.start("card_issuance", {"application": {"application_id": "x"}}, actor="t")
    with pytest.raises(InvalidInput):
        rt.start("card_issuance", {"no_application": 1}, actor="t")
    with pytest.raises(InvalidInput):
        rt.start("card_issuance", {"application": APP, "_private": 1}, actor="t")
    from callvet.workflow.tables import wf_instances

    assert _count(db, wf_instances) == 0


@pytest.mark.parametrize(("crash_at", "effects_left", "calls_at_crash"), [(1, 0, 0), (2, 2, 1)])
def test_service_effects_replayed_not_repeated_after_crash(
    db: Database, monkeypatch: pytest.MonkeyPatch, crash_at: int, effects_left: int, calls_at_crash: int
) -> None:
    """A crash between a handler and its state commit rolls back both; committed effects never rerun.

    State saves of an auto-approved card: 1 = product.configure's unit of work, committed before the
    decision engine runs (whose result is stored at once under its effect key); 2 = issuing the card
    and ending. A crash at 1 loses configure (rerun); at 2 loses the issuance but not the decision."""
    calls: list[str] = []

    def counting(app: dict[str, Any], inv: Any, actor: str) -> dict[str, Any]:
        calls.append(app["application_id"])
        return scripted_decider(app, inv, actor)

    rt = _rt(db, counting)
    from callvet.workflow import engine as engine_mod

    real_save = engine_mod.WorkflowRuntime._save
    state = {"n": 0}

    def crashing_save(self: Any, conn: Any, inst: Any, status: Any, error: Any = None) -> None:
        state["n"] += 1
        if state["n"] == crash_at:
            raise RuntimeError("simulated power cut")
        real_save(self, conn, inst, status, error)

    monkeypatch.setattr(engine_mod.WorkflowRuntime, "_save", crashing_save)
    with pytest.raises(RuntimeError):
        rt.start("card_issuance", {"application": application(5, flagged=False, requested=20000)}, actor="t")
    monkeypatch.setattr(engine_mod.WorkflowRuntime, "_save", real_save)
    assert len(calls) == calls_at_crash
    assert _count(db, wf_effects) == effects_left
    assert _count(db, wf_issuances) == 0
    rt2 = WorkflowRuntime(db, decide=counting)
    assert rt2.run_due() == 1
    assert rt2.run_due() == 0
    from callvet.workflow.tables import wf_instances

    with db.connect() as conn:
        row = conn.execute(select(wf_instances.c.status)).one()
    assert row.status == "completed"
    assert _count(db, wf_issuances) == 1
    assert len(calls) == 1  # the decision engine ran exactly once in all


def test_timer_escalates_after_restart(db: Database) -> None:
    rt = _rt(db)
    s = rt.start(
        "card_issuance",
        {"application": application(6, flagged=False, income=0), "review_deadline": "PT1S"},
        actor="t",
    )
    assert s["status"] == "waiting" and s["next_timer_at"]
    review = rt.board.list_open(role="approver")
    assert len(review) == 1
    time.sleep(1.3)
    rt2 = WorkflowRuntime(db, decide=scripted_decider)  # a fresh process: nothing in memory
    assert rt2.run_due() == 1
    assert rt2.board.list_open(role="approver") == []
    escalated = rt2.board.list_open(role="risk_officer")
    assert len(escalated) == 1 and escalated[0]["assignee"] == "rita"
    assert "task.cancelled" in _kinds(rt2, s["instance_id"])
    s = rt2.complete_task(
        escalated[0]["task_id"],
        {"review_decision": "approve"},
        actor="r",
        role="risk_officer",
        reviewer_id="rita",
    )
    assert s["status"] == "completed"


def test_instance_stays_on_its_version(db: Database) -> None:
    rt = _rt(db)
    s1 = rt.start("card_issuance", {"application": application(7, flagged=False, income=0)}, actor="t")
    xml = Path(rt.definitions.get("card_issuance").name) if False else None
    assert xml is None
    from callvet.workflow.definitions import PROCESSES_DIR

    text = (
        (PROCESSES_DIR / "card_issuance.bpmn")
        .read_text()
        .replace("Review referred application", "Review referred application (v2)")
    )
    d2 = rt.definitions.upload(text, actor="t", activate=True)
    assert d2.version == 2 and d2.active
    s2 = rt.start("card_issuance", {"application": application(8, flagged=False, income=0)}, actor="t")
    assert (s1["version"], s2["version"]) == (1, 2)
    names = {t["instance_id"]: t["name"] for t in rt.board.list_open(role="approver")}
    assert names[s1["instance_id"]] == "Review referred application"
    assert names[s2["instance_id"]] == "Review referred application (v2)"
    task = next(t for t in rt.board.list_open(role="approver") if t["instance_id"] == s1["instance_id"])
    rt3 = WorkflowRuntime(db, decide=scripted_decider)
    assert (
        rt3.complete_task(task["task_id"], {"review_decision": "decline"}, actor="a", role=None)["version"]
        == 1
    )


def test_loan_path_follows_product_configuration(db: Database) -> None:
    rt = _rt(db)
    data = {
        "application": application(9, flagged=False),
        "product": "car",
        "amount": 50000,
        "documents": ["id_card", "driving_licence", "vehicle_quote"],
    }
    s = rt.start("instalment_loan", data, actor="t")
    assert s["status"] == "completed"  # band 0: no call, automatic approval
    assert rt.summary(s["instance_id"], with_events=True)["data"]["outcome"] == "loan_disbursed"
    products = rt.config.get_raw("products")[1]
    products["instalment"]["car"]["bands"][0].update(calls=2, review_levels=1, auto_approve=False)
    rt.config.set("products", products, actor="risk:t")
    s = rt.start("instalment_loan", {**data, "application": application(10, flagged=False)}, actor="t")
    iid = s["instance_id"]
    assert s["status"] == "waiting"
    for _ in range(2):  # two investigation calls, as configured
        s = rt.deliver_message(
            iid, "investigation_result", {"investigation": {"investigator": "robot-2"}}, actor="robot"
        )
    tasks = [t for t in rt.board.list_open(role="approver") if t["instance_id"] == iid]
    assert len(tasks) == 1 and tasks[0]["name"] == "Loan review (level 1)"
    s = rt.complete_task(
        tasks[0]["task_id"], {"review_decision": "approve"}, actor="a", role="approver", reviewer_id="alice"
    )
    assert s["status"] == "completed"
    kinds = _kinds(rt, iid)
    assert kinds.count("message.received") == 2
    with pytest.raises(InvalidInput):
        rt.config.set(
            "products", {"instalment": {"car": {"title": "x", "bands": [{"max_amount": -1}]}}}, actor="t"
        )
    with pytest.raises(InvalidInput):
        rt.start("instalment_loan", {**data, "product": "yacht"}, actor="t")


def test_limit_adjustment_auto_and_review(db: Database) -> None:
    rt = _rt(db)
    base = {"application": application(11, flagged=False), "current_limit": 20000}
    s = rt.start("limit_adjustment", {**base, "requested_limit": 30000}, actor="t")
    assert s["status"] == "completed"
    with db.connect() as conn:
        assert conn.execute(select(wf_issuances.c.amount)).scalar() == 30000
    assert rt.summary(s["instance_id"], with_events=True)["data"]["outcome"] == "limit_changed"
    s = rt.start("limit_adjustment", {**base, "requested_limit": 90000}, actor="t")
    task = rt.board.list_open(role="risk_officer")[0]
    assert task["name"] == "Review limit change" and task["assignee"] == "rita"
    s = rt.complete_task(
        task["task_id"], {"review_decision": "approve"}, actor="r", role="risk_officer", reviewer_id="rita"
    )
    assert s["status"] == "completed"
    m = rt.supervisor.metrics()
    assert m["completed_actions"] == 2 and m["checked"] == 2 and m["coverage"] == 1.0


def test_failing_script_fails_instance_safely(db: Database) -> None:
    rt = _rt(db)
    from callvet.workflow.definitions import PROCESSES_DIR

    text = (
        (PROCESSES_DIR / "limit_adjustment.bpmn")
        .read_text()
        .replace(
            "increase = requested_limit - current_limit",
            "increase = requested_limit - current_limit + 2 ** 100",
        )
    )
    rt.definitions.upload(text, actor="t", activate=True)
    s = rt.start(
        "limit_adjustment",
        {"application": application(12), "current_limit": 1, "requested_limit": 2},
        actor="t",
    )
    assert s["status"] == "failed" and "larger than" in (s["error"] or "")
    assert rt.run_due() == 0


def test_sharded_workers_partition_the_queue(db: Database) -> None:
    rt = _rt(db)
    for i in range(12):
        rt.start(
            "card_issuance",
            {"application": application(40 + i, flagged=False, requested=20000)},
            actor="t",
            run=False,
        )
    with pytest.raises(InvalidInput):
        rt.run_due(shard=(0, 3))
    first = rt.run_due(shard=(0, 2))
    second = rt.run_due(shard=(1, 2))
    assert first + second == 12 and rt.run_due() == 0


def test_runtime_bombs_in_conditions_fail_the_instance_not_the_server(db: Database) -> None:
    rt = _rt(db)
    from callvet.workflow.definitions import PROCESSES_DIR

    text = (
        (PROCESSES_DIR / "card_issuance.bpmn")
        .read_text()
        .replace("decision == 'refer_investigation'", "9**9**9 > 1 or note * repeat == ''")
    )
    rt.definitions.upload(text, actor="t", activate=True)
    t0 = time.perf_counter()
    s = rt.start("card_issuance", {"application": application(60), "note": "a", "repeat": 10**9}, actor="t")
    assert s["status"] == "failed" and "exponent" in (s["error"] or "")
    assert time.perf_counter() - t0 < 30  # generous: a real 9**9**9 would not return at all
    assert rt.board.list_open(role=None) == []


def test_finish_hook_runs_in_the_transaction_that_ends_a_reviewed_instance(db: Database) -> None:
    rt = _rt(db)
    seen: list[tuple[str, str, Any]] = []

    def fail(_conn: Any, iid: str, status: str, data: dict[str, Any]) -> None:
        raise RuntimeError("hook failed")

    rt.add_finish_hook(lambda _c, iid, status, data: seen.append((iid, status, data.get("outcome"))))
    app = application(2, flagged=False, requested=20000)
    auto = rt.start("card_issuance", {"application": app}, actor="t")
    assert auto["status"] == "completed" and seen == [], "no person was involved: no hook"
    iid = rt.start("card_issuance", {"application": APP}, actor="analyst:t")["instance_id"]
    rt.deliver_message(iid, "investigation_result", {"investigation": {
        "voiceprint_alarm": False, "questionnaire": {"verdict": "inconclusive", "risk_score": 0.4}}},
        actor="robot")
    task = next(t for t in rt.board.list_open(role="approver") if t["instance_id"] == iid)
    rt.finish_hooks.append(fail)
    with pytest.raises(RuntimeError):
        rt.complete_task(task["task_id"], {"review_decision": "approve"}, actor="approver:alice",
                         role="approver", reviewer_id="alice")
    assert rt.summary(iid)["status"] == "waiting", "a failing hook rolls the completion back"
    assert [t["task_id"] for t in rt.board.list_open(role="approver")] == [task["task_id"]]
    rt.finish_hooks.remove(fail)
    seen.clear()
    s = rt.complete_task(task["task_id"], {"review_decision": "approve"}, actor="approver:alice",
                         role="approver", reviewer_id="alice")
    assert s["status"] == "completed"
    assert seen == [(iid, "completed", "card_issued")]
