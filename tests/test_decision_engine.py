from __future__ import annotations

from typing import Any

import pytest
from callvet.core.errors import InvalidInput, NotFound
from callvet.decision import Decision, Outcome
from decision_fixtures import example, make_engine

CLEAN = {"risk_reasons": []}


def test_decide_example_and_store(db: Any) -> None:
    eng = make_engine(db)
    d = eng.decide(example(), actor="analyst:t")
    assert isinstance(d, Decision)
    assert d.decision is Outcome.REFER_INVESTIGATION
    assert d.credit_limit == 0.0
    assert 0 < d.score < 1
    assert d.policy_versions == {"prescreen": 1, "investigation": 1, "credit_limit": 1}
    expected = "flagged_application" if d.score >= 0.2 else "multiple_risk_flags"
    assert d.reasons[0].code == expected and d.reasons[0].text
    stored = eng.get(d.decision_id)
    assert stored["decision"] == "refer_investigation"
    assert stored["application"]["application_id"] == "APP-2026-000123"
    assert stored["policy_versions"] == d.policy_versions
    assert stored["model_version"] == eng.model_version
    with pytest.raises(NotFound):
        eng.get("nope")


def test_investigation_changes_outcome(db: Any) -> None:
    eng = make_engine(db)
    cleared = eng.decide(example(), {"voiceprint_alarm": False,
                                     "questionnaire": {"verdict": "pass", "risk_score": 0.1}}, actor="t")
    assert cleared.decision is Outcome.APPROVE
    assert cleared.credit_limit > 0 and cleared.credit_limit % 100 == 0
    assert [r.policy for r in cleared.reasons] == ["prescreen", "investigation", "credit_limit"]
    alarm = eng.decide(example(), {"voiceprint_alarm": True}, actor="t")
    assert alarm.decision is Outcome.DECLINE
    assert alarm.reasons[1].code == "voiceprint_blacklist_match"
    pending = eng.decide(example(), {"voiceprint_alarm": False}, actor="t")
    assert pending.decision is Outcome.REFER_INVESTIGATION


def test_limit_respects_income_cap_and_request(db: Any) -> None:
    eng = make_engine(db)
    d = eng.decide(example(**CLEAN, requested_limit=3000), actor="t")
    assert d.decision is Outcome.APPROVE
    assert d.credit_limit == 3000
    big = eng.decide(example(**CLEAN, requested_limit=None, card_product="classic",
                             employment={"monthly_income": 900000}), actor="t")
    assert big.decision is Outcome.APPROVE and big.credit_limit == 20000


def test_batch_equals_single_and_zen(db: Any) -> None:
    eng = make_engine(db)
    apps = [example(**CLEAN), example(), example(credit_profile={"delinquencies_24m": 5}),
            example(employment={"monthly_income": 0})]
    invs = [None, {"voiceprint_alarm": False, "questionnaire": {"verdict": "inconclusive"}}, None, None]
    batch = eng.decide_batch(apps, invs, actor="t")
    ref = eng.decide_batch(apps, invs, actor="t", store=False, vectorised=False)
    assert [d.decision for d in batch] == [Outcome.APPROVE, Outcome.REFER_HUMAN, Outcome.DECLINE,
                                           Outcome.REFER_HUMAN]
    assert [(d.decision, d.credit_limit) for d in batch] == [(d.decision, d.credit_limit) for d in ref]
    single = eng.decide(apps[0], actor="t")
    assert single.score == pytest.approx(batch[0].score)
    assert len({d.decision_id for d in batch}) == 4


def test_malformed_input_names_field(db: Any) -> None:
    eng = make_engine(db)
    with pytest.raises(InvalidInput) as ei:
        eng.decide(example(employment={"monthly_income": -5}), actor="t")
    assert ei.value.details["field"] == "employment.monthly_income"
    with pytest.raises(InvalidInput) as ei:
        eng.decide(example(), {"questionnaire": {"verdict": "maybe"}}, actor="t")
    assert "questionnaire.verdict" in ei.value.details["field"]


def test_broken_active_policy_is_a_typed_error(db: Any) -> None:
    from callvet.core.errors import Unavailable
    from callvet.decision.engine import load_policy
    from callvet.decision.store import shipped_graph

    eng = make_engine(db)
    eng.refresh_seconds = 1e9
    graph = shipped_graph("prescreen")
    graph["nodes"][2]["content"]["rules"][-1]["screen_o0"] = '"maybe"'
    eng._policies["prescreen"] = load_policy("prescreen", 99, graph)
    with pytest.raises(Unavailable) as ei:
        eng.decide(example(risk_reasons=[]), actor="t")
    assert ei.value.code == "policy_no_outcome"
    graph["nodes"][1]["content"]["expressions"][0]["value"] = "monthly_obligations / nope"
    eng._policies["prescreen"] = load_policy("prescreen", 100, graph)
    with pytest.raises(Unavailable) as ei:
        eng.decide(example(), actor="t")
    assert ei.value.code == "policy_failed"
