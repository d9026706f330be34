"""Issue 13: facts the form-holder cannot know (bureau, bank), lookup delays and reading-like delivery,
and the optional ``bank_relationship`` contract block."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from callvet.core.application import Application
from callvet.questionnaire.bank import load_bank, source_of
from callvet.questionnaire.interview import InterviewEngine
from callvet.questionnaire.prosody import delivery, lookup_delay
from callvet.questionnaire.scoring import Scorer
from callvet.sim.questionnaire import (
    EngineDriver,
    FormHolder,
    GenuineApplicant,
    make_application,
    run_interview,
)
from pydantic import ValidationError

EXAMPLE = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
BANK = {
    "cards_held": 2,
    "salary_account": True,
    "last_repayment_amount": 2860.5,
    "recent_transaction": {"merchant": "永辉超市", "amount": 236.8, "date": "2026-11-17"},
}


def _app(**extra: Any) -> Application:
    return Application.model_validate({**EXAMPLE, "bank_relationship": BANK, **extra})


def test_every_question_is_marked_by_its_source() -> None:
    bank = load_bank()
    by = {q.id: q.source for q in bank.questions.values()}
    assert by["applicant_birth_date"] == "form" and by["existing_cards"] == "bureau"
    assert by["bank_cards_held"] == "bank" and by["bank_recent_merchant"] == "bank"
    assert all(q.source == source_of(q.checks[0]) for q in bank.questions.values())


def test_bank_relationship_is_optional_validated_and_bounded() -> None:
    assert Application.model_validate(EXAMPLE).bank_relationship is None
    app = _app()
    assert app.bank_relationship is not None and app.bank_relationship.cards_held == 2
    assert app.get_path("bank_relationship.recent_transaction.merchant") == "永辉超市"
    for bad in ({"cards_held": -1}, {"cards_held": 51}, {"last_repayment_amount": "lots"},
                {"recent_transaction": {"merchant": "", "amount": 1, "date": "2026-11-01"}},
                {"recent_transaction": {"merchant": "x", "amount": 1, "date": "2999-01-01"}},
                {"recent_transaction": {"merchant": "x", "amount": -5, "date": "2026-11-01"}}):
        with pytest.raises(ValidationError):
            Application.model_validate({**EXAMPLE, "bank_relationship": {**BANK, **bad}})


def test_malformed_bank_relationship_is_a_422_naming_the_field(api: Any) -> None:
    client, h = api
    body = {**EXAMPLE, "bank_relationship": {**BANK, "cards_held": "many"}}
    r = client.post("/v1/interviews", json={"application": body}, headers=h["robot"])
    assert r.status_code == 422
    assert r.json()["field"] == "application.bank_relationship.cards_held"
    r = client.post("/v1/interviews", json={"application": {**EXAMPLE, "bank_relationship": BANK}},
                    headers=h["robot"])
    assert r.status_code == 201, r.text


def _answer_until(eng: InterviewEngine, bank_id: str, caller: Any) -> dict[str, Any]:
    for _ in range(20):
        q = eng.view()["question"]
        cur = eng.current
        assert cur is not None
        if cur.bank_id == bank_id:
            return q
        reply = caller.respond(q)
        eng.answer(q["question_id"], reply["transcript"], reply["timing"], reply["prosody"])
        if eng.view()["state"] != "asking":
            break
    raise AssertionError(f"{bank_id} was never asked")


def test_risky_applicants_meet_an_independent_fact_first() -> None:
    eng = InterviewEngine.new(load_bank(), Scorer(), _app(), attempt=1)
    paper = [eng.current.bank_id, *eng.state["queue"]]  # type: ignore[union-attr]
    assert load_bank().question(paper[1]).independent


def test_counts_exactly_amounts_approximately_and_transaction_text() -> None:
    bank = load_bank()
    eng = InterviewEngine.new(bank, Scorer(), _app(risk_reasons=[]), attempt=1)
    sc = Scorer()
    cards = eng.render(bank.question("bank_cards_held"))
    assert sc.judge(cards, "two cards", 2).outcome.value == "correct"
    assert sc.judge(cards, "three", 2).outcome.value == "wrong"
    rep = eng.render(bank.question("bank_last_repayment"))
    assert sc.judge(rep, "大概三千", 2860.5).outcome.value == "correct"
    assert sc.judge(rep, "五千", 2860.5).outcome.value == "wrong"
    merchant = eng.render(bank.question("bank_recent_merchant"))
    assert "11月17日" in merchant.text and "240元" in merchant.text
    assert sc.judge(merchant, "在永辉超市买东西", "永辉超市").outcome.value == "correct"
    salary = eng.render(bank.question("bank_salary_account"))
    assert sc.judge(salary, "是的", True).outcome.value == "correct"
    assert sc.judge(salary, "是的", False).outcome.value == "wrong"


def _timed(delay: float, rate: float = 3.5, pauses: int = 0, kind: str = "name") -> dict[str, Any]:
    return {"answer_type": kind, "flags": [],
            "features": {"delay_s": delay, "speech_rate": rate, "pause_count": float(pauses)}}


def test_lookup_delay_is_measured_against_the_callers_own_word_answers() -> None:
    quick = [_timed(0.6), _timed(0.7, kind="place")]
    assert lookup_delay("date", 5.0, quick)["looked_up"]
    assert not lookup_delay("date", 1.1, quick)["looked_up"]
    assert not lookup_delay("name", 5.0, quick)["looked_up"]
    slow_talker = [_timed(3.0), _timed(3.4, kind="choice")]
    assert not lookup_delay("amount", 4.2, slow_talker)["looked_up"]


def test_scripted_delivery_needs_an_even_pace_on_every_answer() -> None:
    even = [_timed(2.0 + 0.01 * i, 3.6 + 0.01 * i) for i in range(6)]
    assert delivery(even)["scripted"]
    assert not delivery(even[:5])["scripted"]
    varied = [*even[:5], _timed(0.8, 3.1)]
    assert not delivery(varied)["scripted"]
    paused = [*even[:5], _timed(2.0, 3.6, pauses=1)]
    assert not delivery(paused)["scripted"]


def test_engine_names_lookup_and_scripted_delivery_and_fails_the_form_holder() -> None:
    driver = EngineDriver(Scorer())
    looked = scripted = 0
    verdicts = []
    for seed in range(40):
        app = make_application(50_000 + seed)
        res = run_interview(driver, FormHolder(app, random.Random(seed)))["result"]
        verdicts.append(res["verdict"])
        looked += any(r.startswith("lookup_delay:") for r in res["reasons"])
        scripted += "scripted_delivery" in res["reasons"]
        assert "form_holder" in res["evidence_by_threat"]
    assert looked >= 10 and scripted >= 5
    assert verdicts.count("pass") <= 4


def test_form_facts_alone_do_not_pass_when_independent_facts_exist() -> None:
    """Every form fact right at an owner's pace but every bureau/bank fact wrong: no pass."""
    app = _app()
    eng = InterviewEngine.new(load_bank(), Scorer(), app, attempt=1)
    owner = GenuineApplicant(app, random.Random(3))
    wrong = {"bank_cards_held": "seven", "bank_salary_account": "no", "bank_last_repayment": "九万",
             "bank_recent_merchant": "星巴克", "bank_recent_merchant_choice": "D", "existing_cards": "five",
             "monthly_obligations": "九万", "recent_applications": "four", "credit_delinquency": "有过"}
    while eng.view()["state"] == "asking":
        q = eng.view()["question"]
        reply = owner.respond(q)
        text = wrong.get(eng.current.bank_id, reply["transcript"])  # type: ignore[union-attr]
        eng.answer(q["question_id"], text, reply["timing"], reply["prosody"])
    res = eng.view()["result"]
    assert res["verdict"] != "pass" and res["evidence_by_threat"]["form_holder"] < 0
