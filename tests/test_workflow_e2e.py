"""The shipped processes end to end with the real decision engine (ONNX credit model + JDM policies)."""

from __future__ import annotations

from typing import Any

import pytest
from callvet.core.db import Database
from callvet.workflow.engine import WorkflowRuntime, engine_decider
from decision_fixtures import example, make_engine


@pytest.fixture
def rt(db: Database) -> WorkflowRuntime:
    engine = make_engine(db)
    runtime = WorkflowRuntime(db, decide=engine_decider(engine))
    runtime.ensure_ready()
    runtime.board.upsert_user(
        "alice",
        role="approver",
        skills=["card", "instalment"],
        max_amount=100000,
        name="Alice Zhou",
        actor="t",
    )
    runtime.board.upsert_user(
        "rita", role="risk_officer", skills=["card", "instalment", "limit"], name="Rita Sun", actor="t"
    )
    runtime._engine_for_test = engine  # type: ignore[attr-defined]
    return runtime


def _data(rt: WorkflowRuntime, iid: str) -> dict[str, Any]:
    return rt.summary(iid, with_events=True)["data"]  # type: ignore[no-any-return]


def test_clean_application_is_decided_and_issued(rt: WorkflowRuntime) -> None:
    app = example(risk_reasons=[], requested_limit=20000)
    reference = rt._engine_for_test.decide(app, actor="t", store=False)  # type: ignore[attr-defined]
    s = rt.start("card_issuance", {"application": app}, actor="analyst:a")
    data = _data(rt, s["instance_id"])
    assert data["prescreen"]["decision"] == reference.decision.value == "approve"
    assert data["credit_limit"] == reference.credit_limit
    assert s["status"] == "completed" and data["outcome"] == "card_issued"


def test_flagged_application_goes_through_call_and_review(rt: WorkflowRuntime) -> None:
    s = rt.start("card_issuance", {"application": example()}, actor="analyst:a")
    iid = s["instance_id"]
    assert _data(rt, iid)["decision"] == "refer_investigation" and s["status"] == "waiting"
    inv = {
        "voiceprint_alarm": False,
        "investigator": "robot-9",
        "questionnaire": {"verdict": "inconclusive", "risk_score": 0.35},
    }
    rt.deliver_message(iid, "investigation_result", {"investigation": inv}, actor="robot:r")
    assert _data(rt, iid)["final"]["decision"] == "refer_human"
    task = rt.board.list_open(role="approver")[0]
    s = rt.complete_task(
        task["task_id"],
        {
            "review_decision": "approve",
            "approved_amount": 30000,
            "documents": ["id_card", "income_proof"],
            "review_note": "Payslips and employer confirmed by phone.",
        },
        actor="approver:alice",
        role="approver",
        reviewer_id="alice",
    )
    assert s["status"] == "completed" and _data(rt, iid)["outcome"] == "card_issued"
    assert rt.supervisor.metrics()["checked"] == 1


def test_blacklisted_voice_is_declined(rt: WorkflowRuntime) -> None:
    s = rt.start("card_issuance", {"application": example()}, actor="analyst:a")
    s = rt.deliver_message(
        s["instance_id"],
        "investigation_result",
        {"investigation": {"voiceprint_alarm": True, "investigator": "robot-9"}},
        actor="robot",
    )
    assert s["status"] == "completed" and _data(rt, s["instance_id"])["outcome"] == "declined"


def test_loan_and_limit_processes_with_engine(rt: WorkflowRuntime) -> None:
    app = example(risk_reasons=[])
    s = rt.start(
        "instalment_loan",
        {
            "application": app,
            "product": "direct_customer",
            "amount": 80000,
            "documents": ["id_card", "income_proof", "employment_certificate"],
        },
        actor="analyst:a",
    )
    iid = s["instance_id"]
    assert s["status"] == "waiting"  # band 2: one call, one review level
    rt.deliver_message(
        iid,
        "investigation_result",
        {
            "investigation": {
                "investigator": "robot-1",
                "questionnaire": {"verdict": "pass", "risk_score": 0.1},
            }
        },
        actor="robot",
    )
    task = rt.board.list_open(role="approver")[0]
    assert task["name"] == "Loan review (level 1)"
    s = rt.complete_task(
        task["task_id"], {"review_decision": "approve"}, actor="a", role="approver", reviewer_id="alice"
    )
    assert s["status"] == "completed" and _data(rt, iid)["outcome"] == "loan_disbursed"
    s = rt.start(
        "limit_adjustment",
        {"application": app, "current_limit": 20000, "requested_limit": 30000},
        actor="analyst:a",
    )
    assert s["status"] == "completed" and _data(rt, s["instance_id"])["outcome"] == "limit_changed"


def test_questionnaire_result_is_read_from_the_interview_store(rt: WorkflowRuntime) -> None:
    """The robot names the interview it ran; the workflow reads the verdict the questionnaire stored."""
    import random

    from callvet.questionnaire.service import InterviewService
    from callvet.sim.questionnaire import GenuineApplicant, make_application, run_interview

    # The workflow reading the stored verdict is under test, not the form-holder check (issue 13).
    app = make_application(77).model_copy(update={"credit_profile": None, "bank_relationship": None})
    interview = run_interview(
        InterviewService(rt.db), GenuineApplicant(app, random.Random(5)), actor="robot:r"
    )
    assert interview["result"]["verdict"] == "pass"
    data = app.model_dump(mode="json")
    data["risk_reasons"] = ["new_device", "address_mismatch"]
    s = rt.start("card_issuance", {"application": data}, actor="analyst:a")
    assert _data(rt, s["instance_id"])["decision"] == "refer_investigation"
    rt.deliver_message(
        s["instance_id"],
        "investigation_result",
        {
            "investigation": {
                "interview_id": interview["interview_id"],
                "voiceprint_alarm": False,
                "investigator": "robot-3",
            }
        },
        actor="robot:r",
    )
    got = _data(rt, s["instance_id"])
    assert got["investigation"]["questionnaire"]["verdict"] == "pass"
    assert got["investigation"]["questionnaire"]["risk_score"] == interview["result"]["risk_score"]
    assert got["final"]["decision"] in ("approve", "refer_human")
    other = rt.start("card_issuance", {"application": example()}, actor="analyst:a")
    s = rt.deliver_message(
        other["instance_id"],
        "investigation_result",
        {"investigation": {"interview_id": interview["interview_id"]}},
        actor="robot:r",
    )
    assert s["status"] == "failed" and "another application" in (s["error"] or "")
