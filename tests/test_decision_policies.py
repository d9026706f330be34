"""Edge cases of each shipped policy graph, evaluated by zen-engine and by both compiled modes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import zen
from callvet.decision.compiler import compile_graph
from callvet.decision.store import shipped_graph

BASE_PRESCREEN = {"age": 40.0, "has_income": 1.0, "monthly_income": 10000.0, "monthly_obligations": 1000.0,
                  "delinquencies_24m": 0.0, "inquiries_6m": 1.0, "risk_reason_count": 0.0,
                  "requested_limit": 1e12, "score": 0.1, "card_product": ""}
BASE_INVESTIGATION = {"voiceprint_alarm": False, "questionnaire_verdict": "pass", "questionnaire_risk": 0.1,
                      "instant_outcome": "approve"}
BASE_LIMIT = {"score": 0.1, "monthly_income": 10000.0, "monthly_obligations": 0.0, "card_product": "gold",
              "requested_limit": 1e12}


def _all_modes(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """zen's answer, after asserting the compiled graph gives the same in both modes."""
    graph = shipped_graph(name)
    want = zen.ZenEngine().create_decision(json.dumps(graph)).evaluate(ctx)["result"]
    program = compile_graph(graph)
    row = program.evaluate_row(ctx)
    cols = program.evaluate({k: np.asarray([v], dtype=object if isinstance(v, str) else None)
                             for k, v in ctx.items()})
    for key, value in want.items():
        if isinstance(value, str):
            assert row[key] == value and cols[key][0] == value, key
        else:
            assert row[key] == pytest.approx(value) and cols[key][0] == pytest.approx(value), key
    return want


@pytest.mark.parametrize(("change", "outcome", "reason"), [
    ({}, "approve", "within_risk_appetite"),
    ({"age": 17.0}, "decline", "underage"),
    ({"age": 18.0}, "approve", "within_risk_appetite"),
    ({"delinquencies_24m": 2.0}, "approve", "within_risk_appetite"),
    ({"delinquencies_24m": 3.0}, "decline", "recent_delinquencies"),
    ({"score": 0.55}, "decline", "high_model_risk"),
    ({"score": 0.5499}, "refer_human", "model_grey_zone"),
    ({"score": 0.4}, "refer_human", "model_grey_zone"),
    ({"score": 0.3999}, "approve", "within_risk_appetite"),
    ({"monthly_obligations": 6000.0}, "approve", "within_risk_appetite"),
    ({"monthly_obligations": 6001.0}, "decline", "debt_burden"),
    ({"has_income": 0.0, "monthly_income": 0.0}, "refer_human", "income_unverified"),
    ({"risk_reason_count": 1.0, "score": 0.2}, "refer_investigation", "flagged_application"),
    ({"risk_reason_count": 1.0, "score": 0.19}, "approve", "within_risk_appetite"),
    ({"risk_reason_count": 2.0, "score": 0.05}, "refer_investigation", "multiple_risk_flags"),
    ({"inquiries_6m": 6.0}, "refer_human", "many_recent_inquiries"),
    ({"age": 17.0, "score": 0.9, "delinquencies_24m": 9.0}, "decline", "underage"),
])
def test_prescreen_edges(change: dict[str, Any], outcome: str, reason: str) -> None:
    got = _all_modes("prescreen", {**BASE_PRESCREEN, **change})
    assert (got["outcome"], got["reason"]) == (outcome, reason)


@pytest.mark.parametrize(("change", "outcome", "reason"), [
    ({}, "approve", "investigation_cleared"),
    ({"voiceprint_alarm": True}, "decline", "voiceprint_blacklist_match"),
    ({"voiceprint_alarm": True, "instant_outcome": "refer_human"}, "decline", "voiceprint_blacklist_match"),
    ({"questionnaire_verdict": "fail"}, "decline", "questionnaire_failed"),
    ({"questionnaire_risk": 0.7}, "decline", "questionnaire_high_risk"),
    ({"questionnaire_risk": 0.6999}, "refer_human", "questionnaire_elevated_risk"),
    ({"questionnaire_risk": 0.4}, "refer_human", "questionnaire_elevated_risk"),
    ({"questionnaire_risk": 0.3999}, "approve", "investigation_cleared"),
    ({"instant_outcome": "decline"}, "decline", "instant_decline_stands"),
    ({"questionnaire_verdict": "inconclusive"}, "refer_human", "questionnaire_inconclusive"),
    ({"questionnaire_verdict": "none", "instant_outcome": "refer_investigation"}, "refer_investigation",
     "investigation_incomplete"),
    ({"instant_outcome": "refer_human"}, "refer_human", "instant_referral_stands"),
    ({"instant_outcome": "refer_investigation"}, "approve", "investigation_cleared"),
])
def test_investigation_edges(change: dict[str, Any], outcome: str, reason: str) -> None:
    got = _all_modes("investigation", {**BASE_INVESTIGATION, **change})
    assert (got["outcome"], got["reason"]) == (outcome, reason)


@pytest.mark.parametrize(("change", "band", "limit"), [
    ({}, "B", 30000),
    ({"score": 0.0799}, "A", 40000),
    ({"score": 0.08}, "B", 30000),
    ({"score": 0.15}, "C", 20000),
    ({"score": 0.25}, "D", 10000),
    ({"score": 0.4}, "E", 5000),
    ({"card_product": "classic", "score": 0.01}, "A", 20000),
    ({"card_product": "牡丹白金卡", "score": 0.01}, "A", 40000),
    ({"card_product": "unknown", "score": 0.01}, "A", 10000),
    ({"requested_limit": 12345.0}, "B", 12300),
    ({"monthly_income": 3333.0}, "B", 9900),
    ({"monthly_obligations": 20000.0}, "B", 0),
])
def test_credit_limit_edges(change: dict[str, Any], band: str, limit: float) -> None:
    got = _all_modes("credit_limit", {**BASE_LIMIT, **change})
    assert got["band"] == band and got["credit_limit"] == limit
