from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput
from callvet.sim.workflow import application, scripted_decider
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.supervise import KINDS, baseline_facts, catalogue, load_rules

RULES = load_rules()


def test_catalogue_size_and_shape() -> None:
    counts = Counter(r.kind for r in RULES)
    assert counts["issuance"] >= 100 and counts["limit_adjustment"] >= 50
    assert len({r.id for r in RULES}) == len(RULES)
    for kind in KINDS:
        mine = [r.violation for r in RULES if r.kind == kind]
        assert len(set(mine)) == len(mine), "every rule of a kind must have its own logic"
    topics = {r.topic for r in RULES if r.kind == "issuance"}
    assert {
        "identity_documents",
        "income_employment",
        "limit_against_income",
        "approver_authority",
        "segregation_of_duties",
        "timing",
        "repeated_applications",
        "related_parties",
    } <= topics
    graph = catalogue().graphs["issuance"]
    assert {n["type"] for n in graph["nodes"]} == {"inputNode", "expressionNode", "outputNode"}


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_is_compliant(kind: str) -> None:
    assert catalogue().evaluate(kind, baseline_facts(kind)) == []


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_own_case(rule: Any) -> None:
    cat = catalogue()
    ok = {**baseline_facts(rule.kind), **rule.ok}
    bad = {**baseline_facts(rule.kind), **rule.bad}
    assert rule.id not in {r.id for r in cat.evaluate(rule.kind, ok)}, "compliant example flagged"
    assert rule.id in {r.id for r in cat.evaluate(rule.kind, bad)}, "violating example not flagged"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_findings_queue_and_metrics(db: Database) -> None:
    clock = Clock()
    rt = WorkflowRuntime(db, decide=scripted_decider, clock=clock)
    rt.ensure_ready()
    rt.board.upsert_user(
        "alice", role="approver", skills=["card"], max_amount=20000, name="Applicant 1", actor="t"
    )
    # income 0 -> engine refers to a person; alice approves above her authority, as the applicant herself
    app = application(1, flagged=False, income=0, delinquencies=0, requested=30000)
    s = rt.start("card_issuance", {"application": app}, actor="analyst:a1")
    task = rt.board.list_open(role="approver")[0]
    clock.now += timedelta(minutes=30)
    rt.complete_task(
        task["task_id"],
        {
            "review_decision": "approve",
            "approved_amount": 30000,
            "documents": ["id_card"],
            "review_note": "x",
        },
        actor="approver:alice",
        role="approver",
        reviewer_id="alice",
    )
    found = {f["rule_id"] for f in rt.supervisor.findings(instance_id=s["instance_id"])}
    assert {"ISS-AUT-003", "ISS-SOD-002", "ISS-INC-001"} <= found
    assert "ISS-SOD-001" not in found
    m = rt.supervisor.metrics()
    assert m["checked"] == 1 and m["coverage"] == 1.0 and m["open"] == len(found) and m["overdue"] == 0
    f1, f2 = rt.supervisor.findings(status="open")[:2]
    with pytest.raises(InvalidInput):
        rt.supervisor.rectify(f1["id"], actor="risk:r", note="  ")
    rt.supervisor.rectify(f1["id"], actor="risk:r", note="Authority corrected; second approval obtained")
    with pytest.raises(Conflict):
        rt.supervisor.rectify(f1["id"], actor="risk:r", note="again")
    clock.now += timedelta(days=4)
    rt.supervisor.rectify(f2["id"], actor="risk:r", note="late fix")
    m = rt.supervisor.metrics()
    assert m["rectified"] == 2 and m["rectified_within_3_days"] == 1
    assert m["overdue"] == len(found) - 2
    assert all(f["overdue"] for f in rt.supervisor.findings(status="open"))


def test_two_level_loan_is_judged_at_its_last_level(db: Database) -> None:
    rt = WorkflowRuntime(db, decide=scripted_decider)
    rt.ensure_ready()
    rt.board.upsert_user("alice", role="approver", skills=["instalment"], name="Alice Zhou", actor="t")
    rt.board.upsert_user("rita", role="risk_officer", skills=["instalment"], name="Rita Sun", actor="t")
    docs = ["id_card", "income_proof", "employment_certificate", "bank_statement"]

    def run(i: int, second: str) -> set[str]:
        app = application(i, flagged=False, delinquencies=0, income=20000)
        s = rt.start(
            "instalment_loan",
            {"application": app, "product": "direct_customer", "amount": 200000, "documents": docs},
            actor="analyst:a1",
        )
        for _ in range(2):
            rt.deliver_message(
                s["instance_id"],
                "investigation_result",
                {
                    "investigation": {
                        "investigator": "robot-1",
                        "questionnaire": {"verdict": "pass", "risk_score": 0.1},
                    }
                },
                actor="robot",
            )
        note = {
            "review_decision": "approve",
            "review_note": "Employer, payslips and bank statement verified.",
        }
        t1 = next(t for t in rt.board.list_open(role=None) if t["instance_id"] == s["instance_id"])
        assert t1["name"] == "Loan review (level 1)"
        rt.complete_task(t1["task_id"], note, actor="a", role=None, reviewer_id="alice")
        level1 = {r["rule_id"] for r in rt.supervisor.findings(instance_id=s["instance_id"])}
        assert not {"ISS-AUT-005", "ISS-AUT-007", "ISS-AUT-008"} & level1  # level 2 is still to come
        t2 = next(t for t in rt.board.list_open(role=None) if t["instance_id"] == s["instance_id"])
        assert t2["name"] == "Loan review (level 2)"
        rt.complete_task(t2["task_id"], note, actor="r", role=None, reviewer_id=second)
        assert rt.summary(s["instance_id"])["status"] == "completed"
        return {r["rule_id"] for r in rt.supervisor.findings(instance_id=s["instance_id"])}

    assert not {"ISS-AUT-007", "ISS-AUT-008"} & run(1, "rita")
    assert "ISS-AUT-008" in run(2, "alice")
