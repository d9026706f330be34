"""The vectorised compiler must equal zen-engine (the reference) on the shipped graphs and random inputs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import zen
from callvet.decision.compiler import Unsupported, compile_graph
from callvet.decision.store import POLICY_NAMES, shipped_graph

N = 600


def _obj(*items: str) -> np.ndarray:
    return np.array(items, dtype=object)


def _random_columns(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs concentrated on the graphs' thresholds (edges are where compilers go wrong)."""
    edges = np.array([0, 0.08, 0.15, 0.2, 0.25, 0.3, 0.4, 0.55, 0.6, 0.7, 1.0])

    def near_edges() -> np.ndarray:
        return np.where(rng.random(N) < 0.5, rng.choice(edges, N), np.round(rng.random(N), 3))

    if name == "prescreen":
        income = rng.choice([0.0, 500.0, 3000.0, 9000.0, 40000.0], N)
        return {
            "age": rng.choice([16.0, 17, 18, 19, 45, 80], N),
            "has_income": (income > 0).astype(float),
            "monthly_income": income,
            "monthly_obligations": np.round(income * near_edges(), 0),
            "delinquencies_24m": rng.integers(0, 5, N).astype(float),
            "inquiries_6m": rng.integers(0, 9, N).astype(float),
            "risk_reason_count": rng.integers(0, 3, N).astype(float),
            "requested_limit": rng.choice([1e12, 5000.0], N),
            "score": near_edges(),
        }
    if name == "investigation":
        return {
            "voiceprint_alarm": rng.random(N) < 0.2,
            "questionnaire_verdict": rng.choice(_obj("pass", "fail", "inconclusive", "none"), N),
            "questionnaire_risk": near_edges(),
            "instant_outcome": rng.choice(
                _obj("approve", "decline", "refer_human", "refer_investigation"), N),
        }
    return {
        "score": near_edges(),
        "monthly_income": rng.choice([0.0, 3333.0, 12000.0, 250000.0], N),
        "monthly_obligations": rng.choice([0.0, 1000.0, 5000.0], N),
        "card_product": rng.choice(_obj("platinum", "牡丹白金卡", "gold", "牡丹金卡", "classic", "", "x"), N),
        "requested_limit": rng.choice([1e12, 3000.0, 75000.0], N),
    }


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, int | float) and not isinstance(want, bool):
        return bool(got == pytest.approx(float(want), rel=1e-9))
    return bool(got == want)


def _py(v: Any) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_compiled_equals_zen_on_random_inputs(name: str) -> None:
    graph = shipped_graph(name)
    program = compile_graph(graph)
    compiled = program.evaluate(cols := _random_columns(name, np.random.default_rng(3)))
    ref = zen.ZenEngine().create_decision(json.dumps(graph))
    differences = row_differences = 0
    for i in range(N):
        ctx = {k: _py(v[i]) for k, v in cols.items()}
        expected = ref.evaluate(ctx)["result"]
        by_row = program.evaluate_row(ctx)
        for key, want in expected.items():
            differences += not _same(compiled[key][i], want)
            row_differences += not _same(by_row[key], want)
    assert differences == 0 and row_differences == 0


def test_unsupported_constructs_are_refused() -> None:
    graph = shipped_graph("prescreen")
    switch = json.loads(json.dumps(graph))
    switch["nodes"].insert(1, {"id": "sw", "type": "switchNode", "name": "s", "content": {}})
    with pytest.raises(Unsupported):
        compile_graph(switch)
    ternary = json.loads(json.dumps(graph))
    ternary["nodes"][1]["content"]["expressions"][0]["value"] = "monthly_income > 0 ? 1 : 0"
    with pytest.raises(Unsupported):
        compile_graph(ternary)
    no_default = shipped_graph("investigation")
    no_default["nodes"][1]["content"]["statements"][-1]["condition"] = "voiceprint_alarm == false"
    with pytest.raises(Unsupported):
        compile_graph(no_default)
    no_catch_all = json.loads(json.dumps(graph))
    no_catch_all["nodes"][2]["content"]["rules"].pop()
    with pytest.raises(Unsupported):
        compile_graph(no_catch_all)


def test_unary_cells_lists_and_ranges() -> None:
    graph = shipped_graph("credit_limit")
    out = compile_graph(graph).evaluate({
        "score": np.array([0.0799, 0.08, 0.15, 0.2499, 0.25, 0.4]),
        "monthly_income": np.full(6, 10000.0), "monthly_obligations": np.zeros(6),
        "card_product": np.array(["platinum", "牡丹金卡", "classic", "", "gold", "x"], dtype=object),
        "requested_limit": np.full(6, 1e12),
    })
    assert list(out["band"]) == ["A", "B", "C", "C", "D", "E"]
    assert list(out["product_cap"]) == [100000, 50000, 20000, 10000, 50000, 10000]
    assert list(out["credit_limit"]) == [40000, 30000, 20000, 10000, 10000, 5000]
