"""InterviewService on the real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.questionnaire.service import InterviewService
from callvet.questionnaire.tables import interview_answers
from callvet.sim.questionnaire import GenuineApplicant, Guesser, make_application, run_interview
from sqlalchemy import func, select

EXAMPLE = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())


def test_genuine_interview_is_stored_and_audited(db: Database) -> None:
    svc = InterviewService(db)
    # Storage and audit under test; the form-holder check has its own tests (test_questionnaire_independent).
    app = make_application(77).model_copy(update={"credit_profile": None, "bank_relationship": None})
    out = run_interview(svc, GenuineApplicant(app, random.Random(5)), actor="key:robot")
    assert out["result"]["verdict"] == "pass"
    got = svc.get(out["interview_id"])
    assert got["state"] == "finished" and got["result"] == out["result"]
    assert len(got["answers"]) == out["result"]["questions_asked"]
    assert all(a["assessment"]["outcome"] for a in got["answers"])
    actions = {e["action"] for e in audit.query(db, target_type="interview", target_id=out["interview_id"])}
    assert actions == {"interview.create", "interview.result"}


def test_every_answer_is_written_before_the_next(db: Database) -> None:
    svc = InterviewService(db)
    out = svc.create(EXAMPLE, actor="t")
    iid = out["interview_id"]
    svc.answer(iid, out["question"]["question_id"], "王建国", timing={"delay_s": 0.8, "pauses": [0.2]})
    with db.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(interview_answers).where(interview_answers.c.interview_id == iid)
        ).scalar_one()
    assert n == 1
    fresh = InterviewService(db)
    assert fresh.get(iid)["state"] == "asking"
    assert len(fresh.get(iid)["answers"]) == 1


def test_attempts_count_up_and_papers_differ(db: Database) -> None:
    svc = InterviewService(db)
    a, b = svc.create(EXAMPLE), svc.create(EXAMPLE)
    assert (a["attempt"], b["attempt"]) == (1, 2)
    assert [i["attempt"] for i in svc.list_for_application(EXAMPLE["application_id"])] == [1, 2]
    svc.create(EXAMPLE)
    with pytest.raises(Conflict) as exc:
        svc.create(EXAMPLE)
    assert exc.value.code == "attempts_exhausted"


def test_guesser_fails_and_finished_interview_rejects_answers(db: Database) -> None:
    svc = InterviewService(db)
    out = run_interview(svc, Guesser(make_application(31), random.Random(2)))
    assert out["result"]["verdict"] == "fail"
    with pytest.raises(Conflict):
        svc.answer(out["interview_id"], "q1-applicant_name", "x")


def test_bad_input_is_typed_and_names_the_field(db: Database) -> None:
    svc = InterviewService(db)
    bad = json.loads(json.dumps(EXAMPLE))
    bad["employment"]["monthly_income"] = -5
    with pytest.raises(InvalidInput) as exc:
        svc.create(bad)
    assert exc.value.details["field"] == "application.employment.monthly_income"
    with pytest.raises(InvalidInput):
        svc.create(EXAMPLE, language="fr")
    out = svc.create(EXAMPLE)
    with pytest.raises(InvalidInput) as exc:
        svc.answer(out["interview_id"], out["question"]["question_id"], "x", timing={"delay_s": -1})
    assert exc.value.details["field"] == "timing.delay_s"
    with pytest.raises(InvalidInput):
        svc.answer(out["interview_id"], "q7-nope", "x")
    with pytest.raises(NotFound):
        svc.answer("missing", "q1", "x")
    assert svc.get(out["interview_id"])["answers"] == []


def test_abort_keeps_scored_answers_and_delete_erases(db: Database) -> None:
    svc = InterviewService(db)
    out = svc.create(EXAMPLE)
    svc.answer(out["interview_id"], out["question"]["question_id"], "王建国")
    aborted = svc.abort(out["interview_id"], reason="call dropped", actor="robot")
    assert aborted["state"] == "aborted" and aborted["result"]["verdict"] == "inconclusive"
    assert len(svc.get(out["interview_id"])["answers"]) == 1
    with pytest.raises(InvalidInput):
        svc.delete(out["interview_id"], reason=" ")
    svc.delete(out["interview_id"], reason="data subject request", actor="admin")
    with pytest.raises(NotFound):
        svc.get(out["interview_id"])
    actions = [e["action"] for e in audit.query(db, target_type="interview", target_id=out["interview_id"])]
    assert actions[0] == "interview.delete"


def test_concurrent_answers_to_one_question_store_one(db: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    svc = InterviewService(db)
    out = svc.create(EXAMPLE)
    qid = out["question"]["question_id"]

    def go(_: int) -> str:
        try:
            svc.answer(out["interview_id"], qid, "王建国")
            return "ok"
        except (Conflict, InvalidInput):
            return "rejected"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(go, range(4)))
    assert results.count("ok") == 1
    assert len(svc.get(out["interview_id"])["answers"]) == 1


def test_application_with_too_few_facts_is_inconclusive(db: Database) -> None:
    svc = InterviewService(db)
    out = svc.create({"application_id": "THIN-1", "language": "en", "applicant": {"name": "Ann Lee"}})
    out = svc.answer(out["interview_id"], out["question"]["question_id"], "Ann Lee")
    assert out["result"]["verdict"] == "inconclusive"
    assert "insufficient_evidence" in out["result"]["reasons"]
