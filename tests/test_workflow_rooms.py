"""The workflow's rooms (issue 10): one transition function, one writer per table, one transaction per
change and its audit row, handler dependencies given at construction."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, InvalidInput
from callvet.core.tables import audit_log
from callvet.sim.workflow import scripted_decider
from callvet.workflow import commands, engine
from callvet.workflow.deps import WorkflowDeps
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.status import ALLOWED, FINISHED, InstanceStatus, transition
from callvet.workflow.supervise import Supervisor
from callvet.workflow.tables import wf_instances, wf_tasks
from sqlalchemy import func, select

APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflow"
PAYLOAD = {
    "investigation": {
        "voiceprint_alarm": False,
        "investigator": "robot-1",
        "questionnaire": {"verdict": "inconclusive", "risk_score": 0.4},
    }
}


def _rt(db: Database, **kw: Any) -> WorkflowRuntime:
    kw.setdefault("decide", scripted_decider)
    rt = WorkflowRuntime(db, **kw)
    rt.ensure_ready()
    rt.board.upsert_user("alice", role="approver", skills=["card"], max_amount=100000, actor="t")
    return rt


def _audits(db: Database, action: str) -> int:
    with db.connect() as conn:
        stmt = select(func.count()).select_from(audit_log).where(audit_log.c.action == action)
        return int(conn.execute(stmt).scalar() or 0)


def _status(db: Database, iid: str) -> str:
    with db.connect() as conn:
        return str(conn.execute(select(wf_instances.c.status).where(wf_instances.c.id == iid)).scalar())


def _failing_record(real: Any, action: str) -> Any:
    """``record`` that raises for ``action``: the audit write failing after the change was made."""

    def record(conn: Any, actor: str, act: str, *args: Any, **kw: Any) -> Any:
        if act == action:
            raise RuntimeError("audit store down")
        return real(conn, actor, act, *args, **kw)

    return record


# ---- the transition function ---------------------------------------------------------------------------
@pytest.mark.parametrize("old", list(InstanceStatus))
@pytest.mark.parametrize("new", list(InstanceStatus))
def test_transition_allows_exactly_the_table(old: InstanceStatus, new: InstanceStatus) -> None:
    if old in FINISHED:
        with pytest.raises(Conflict) as err:
            transition(old, new)
        assert err.value.code == "invalid_transition"
    else:
        assert transition(old.value, new.value) is new
        assert new in ALLOWED[old]


def test_transition_rejects_unknown_status() -> None:
    with pytest.raises(ValueError):
        transition("running", "paused")


def test_repository_cannot_revive_a_finished_instance(db: Database) -> None:
    rt = _rt(db)
    s = rt.start("card_issuance", {"application": APP}, actor="t")
    rt.cancel(s["instance_id"], actor="risk:r", reason="duplicate")
    inst = rt.repo.load(s["instance_id"])
    assert inst.status is InstanceStatus.FAILED
    for write in (
        lambda conn: rt.repo.save(conn, inst, InstanceStatus.RUNNING),
        lambda conn: rt.repo.mark_failed(conn, inst, "again"),
    ):
        with pytest.raises(Conflict) as err, db.begin() as conn:
            write(conn)
        assert err.value.code == "invalid_transition"
    assert _status(db, s["instance_id"]) == "failed"


# ---- one transaction per change and its audit row ------------------------------------------------------
def test_cancel_commits_change_and_audit_together(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _rt(db)
    iid = rt.start("card_issuance", {"application": APP}, actor="t")["instance_id"]
    rt.deliver_message(iid, "investigation_result", PAYLOAD, actor="robot")
    assert len(rt.board.list_open(role="approver")) == 1
    monkeypatch.setattr(engine, "record", _failing_record(engine.record, "workflow.instance.cancel"))
    with pytest.raises(RuntimeError):
        rt.cancel(iid, actor="risk:r", reason="fraud ring")
    assert _status(db, iid) == "waiting"  # no cancel without its audit row
    assert len(rt.board.list_open(role="approver")) == 1
    assert _audits(db, "workflow.instance.cancel") == 0
    monkeypatch.undo()
    s = rt.cancel(iid, actor="risk:r", reason="fraud ring")
    assert s["status"] == "failed" and s["error"].startswith("cancelled by risk:r")
    assert _audits(db, "workflow.instance.cancel") == 1
    assert rt.board.list_open(role=None) == []
    with db.connect() as conn:
        statuses = {r.status for r in conn.execute(select(wf_tasks.c.status)).all()}
    assert statuses == {"cancelled"}


def test_message_and_task_completion_commit_with_their_audit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = _rt(db)
    iid = rt.start("card_issuance", {"application": APP}, actor="t")["instance_id"]
    with monkeypatch.context() as m:
        m.setattr(commands, "record", _failing_record(commands.record, "workflow.message"))
        with pytest.raises(RuntimeError):
            rt.deliver_message(iid, "investigation_result", PAYLOAD, actor="robot")
    assert rt.waiting_for(iid) == ["investigation_result"] and rt.board.list_open(role=None) == []
    rt.deliver_message(iid, "investigation_result", PAYLOAD, actor="robot")
    task = rt.board.list_open(role="approver")[0]
    done = {"review_decision": "approve", "documents": ["id_card", "income_proof"]}
    with monkeypatch.context() as m:
        m.setattr(commands, "record", _failing_record(commands.record, "workflow.task.complete"))
        with pytest.raises(RuntimeError):
            rt.complete_task(task["task_id"], done, actor="a", role="approver", reviewer_id="alice")
    assert rt.board.get(task["task_id"])["status"] == "open"
    assert rt.supervisor.metrics()["checked"] == 0  # the supervision check rolled back with it
    s = rt.complete_task(task["task_id"], done, actor="a", role="approver", reviewer_id="alice")
    assert s["status"] == "completed"
    assert _audits(db, "workflow.task.complete") == 1 and _audits(db, "workflow.message") == 1


# ---- dependencies and start hooks given at construction --------------------------------------------------
class _Interviews:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, interview_id: str, *, include_answers: bool = True) -> dict[str, Any]:
        self.asked.append(interview_id)
        return {
            "application_id": APP["application_id"],
            "state": "finished",
            "result": {"verdict": "pass", "risk_score": 0.05, "reasons": ["consistent"]},
        }


def test_handlers_use_the_given_deps(db: Database) -> None:
    decided: list[str] = []

    def decide(app: dict[str, Any], inv: Any, actor: str) -> dict[str, Any]:
        decided.append("final" if inv is not None else "prescreen")
        return scripted_decider(app, inv, actor)

    interviews = _Interviews()
    deps = WorkflowDeps(decide=decide, interviews=interviews, supervisor=Supervisor(db, utcnow))
    rt = _rt(db, deps=deps, decide=None)
    iid = rt.start("card_issuance", {"application": APP}, actor="t")["instance_id"]
    msg = {"investigation": {"voiceprint_alarm": False, "investigator": "robot-1", "interview_id": "iv-1"}}
    rt.deliver_message(iid, "investigation_result", msg, actor="robot")
    assert interviews.asked == ["iv-1"]
    assert decided == ["prescreen", "final"]
    data = rt.summary(iid, with_events=True)["data"]
    assert data["investigation"]["questionnaire"]["verdict"] == "pass"


def test_start_hooks_come_from_products_and_can_be_replaced(db: Database) -> None:
    rt = _rt(db)
    with pytest.raises(InvalidInput) as err:
        rt.start("instalment_loan", {"application": APP, "product": "yacht", "amount": 5}, actor="t")
    assert err.value.code == "unknown_product"

    def no_weekend_intake(data: dict[str, Any]) -> None:
        raise InvalidInput("closed", code="closed")

    strict = _rt(db, hooks={"card_issuance": (no_weekend_intake,)})
    with pytest.raises(InvalidInput) as err:
        strict.start("card_issuance", {"application": APP}, actor="t")
    assert err.value.code == "closed"
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(wf_instances)).scalar() == 0


# ---- one writer per table ------------------------------------------------------------------------------
def _writers(table: str) -> set[str]:
    """Modules of workflow/ that insert into, update or delete from ``table``."""
    found = set()
    for path in WORKFLOW_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("insert", "update", "delete")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == table
            ):
                found.add(path.name)
    return found


def test_each_table_has_one_writer() -> None:
    for table in ("wf_instances", "wf_events", "wf_effects"):
        assert _writers(table) == {"repository.py"}, table
    assert _writers("wf_tasks") == {"tasks.py"}
    assert _writers("wf_checks") == _writers("wf_findings") == {"supervise.py"}


def test_old_state_module_name_still_imports() -> None:
    from callvet.workflow import codec, state

    assert state.StateCodec is codec.StateCodec and state.current_data is codec.current_data
