"""Issue 11's cuts to a start: the instance row, its first steps and the engine's decision record commit
in one transaction; the summary a start or a delivery returns is the state just committed."""

from __future__ import annotations

from typing import Any

import pytest
from callvet.core.db import Database
from callvet.decision.tables import decision_records
from callvet.workflow.engine import WorkflowRuntime, engine_decider
from callvet.workflow.tables import wf_effects, wf_instances, wf_issuances
from decision_fixtures import example, make_engine
from sqlalchemy import event, func, select


def _count(db: Database, table: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def rt(db: Database) -> WorkflowRuntime:
    runtime = WorkflowRuntime(db, decide=engine_decider(make_engine(db)))
    runtime.ensure_ready()
    return runtime


def test_clean_start_is_one_commit_with_its_decision(rt: WorkflowRuntime, db: Database) -> None:
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(db.engine, "commit", on_commit)
    s = rt.start("card_issuance", {"application": example(risk_reasons=[], requested_limit=20000)},
                 actor="t", detail=True)
    event.remove(db.engine, "commit", on_commit)
    assert s["status"] == "completed"
    assert s["data"]["outcome"] == "card_issued"
    assert len(commits) == 1  # instance, configure, decision record, issuance, end: together
    assert _count(db, decision_records) == 1
    assert _count(db, wf_issuances) == 1
    assert s["data"] == rt.summary(s["instance_id"], with_events=True)["data"]


def test_detail_of_a_waiting_start_matches_the_stored_summary(rt: WorkflowRuntime) -> None:
    s = rt.start("card_issuance", {"application": example()}, actor="t", detail=True)
    stored = rt.summary(s["instance_id"], with_events=True)
    assert s["status"] == stored["status"] == "waiting"
    assert s["waiting_for"] == stored["waiting_for"] == ["investigation_result"]
    assert s["data"] == stored["data"]
    out = rt.deliver_message(s["instance_id"], "investigation_result",
                             {"investigation": {"voiceprint_alarm": True}}, actor="t", detail=True)
    again = rt.summary(s["instance_id"], with_events=True)
    assert out["status"] == again["status"]
    assert out["data"] == again["data"]
    assert out["data"]["outcome"] == "declined"


def test_crash_before_the_commit_rolls_the_decision_back_with_the_state(
    rt: WorkflowRuntime, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision runs inside the unit of work: a failure before its commit leaves no decision record
    and no effect, only the started instance, which the worker runs again (one decision in the end)."""
    from callvet.workflow import engine as engine_mod

    real_save = engine_mod.WorkflowRuntime._save

    def crashing_save(self: Any, conn: Any, inst: Any, status: Any, error: Any = None) -> None:
        raise RuntimeError("simulated power cut")

    monkeypatch.setattr(engine_mod.WorkflowRuntime, "_save", crashing_save)
    with pytest.raises(RuntimeError):
        rt.start("card_issuance", {"application": example(risk_reasons=[], requested_limit=20000)},
                 actor="t")
    monkeypatch.setattr(engine_mod.WorkflowRuntime, "_save", real_save)
    assert _count(db, decision_records) == 0
    assert _count(db, wf_effects) == 0
    with db.connect() as conn:
        assert conn.execute(select(wf_instances.c.status)).scalar_one() == "running"
    assert rt.run_due() == 1
    with db.connect() as conn:
        assert conn.execute(select(wf_instances.c.status)).scalar_one() == "completed"
    assert _count(db, decision_records) == 1
    assert _count(db, wf_issuances) == 1


def test_a_second_start_with_the_same_id_is_refused(rt: WorkflowRuntime) -> None:
    from callvet.core.errors import Conflict

    app = {"application": example(risk_reasons=[], requested_limit=20000)}
    rt.start("card_issuance", app, actor="t", instance_id="00000000-0000-0000-0000-000000000011")
    with pytest.raises(Conflict) as err:
        rt.start("card_issuance", app, actor="t", instance_id="00000000-0000-0000-0000-000000000011")
    assert err.value.code == "instance_exists"
