from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core.errors import InvalidInput
from callvet.decision import store
from callvet.decision.tuning import parse_target, propose_tuned, scale_thresholds
from callvet.sim.decision import write_outcomes


def _outcomes(tmp_path: Path, n: int = 4000) -> Path:
    """Outcomes where the bad probability rises with the score, so tightening lowers the bad rate."""
    rng = np.random.default_rng(5)
    score = rng.beta(2, 5, n)
    cols = {"age": np.full(n, 40.0), "has_income": np.ones(n), "monthly_income": np.full(n, 10000.0),
            "monthly_obligations": np.full(n, 1000.0), "delinquencies_24m": np.zeros(n),
            "inquiries_6m": np.ones(n), "risk_reason_count": np.zeros(n), "requested_limit": np.full(n, 1e12),
            "score": score}
    bad = rng.random(n) < score * 0.4
    return write_outcomes(tmp_path / "outcomes.csv", cols, bad)


def test_scale_thresholds_only_touches_the_field() -> None:
    g = store.shipped_graph("prescreen")
    scaled = scale_thresholds(g, "score", 0.5)
    cells = [r for n in scaled["nodes"] if n["type"] == "decisionTableNode" for r in n["content"]["rules"]]
    assert cells[2]["screen_i3"] == ">= 0.275" and cells[0]["screen_i0"] == "< 18"


@pytest.mark.parametrize("target", ["bad_rate=0.05", "approval_rate=0.5"])
def test_tune_proposes_and_does_not_activate(db: Any, tmp_path: Path, target: str) -> None:
    path = _outcomes(tmp_path)
    row = propose_tuned(db, "prescreen", path, parse_target(target), actor="risk_officer:ann")
    assert row["status"] == "proposed" and row["version"] == 2
    assert store.active_versions(db)["prescreen"][0] == 1
    eff = row["expected_effect"]
    if target.startswith("bad_rate"):
        assert eff["before"]["bad_rate"] > 0.05 >= eff["after"]["bad_rate"]
    else:
        assert abs(eff["after"]["approval_rate"] - 0.5) < abs(eff["before"]["approval_rate"] - 0.5)
        assert abs(eff["after"]["approval_rate"] - 0.5) < 0.03
    assert row["content"] != store.shipped_graph("prescreen")


def test_bad_targets_and_files(db: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        parse_target("bad=3")
    bad = tmp_path / "x.csv"
    bad.write_text("score\n0.1\n")
    with pytest.raises(InvalidInput):
        propose_tuned(db, "prescreen", bad, ("bad_rate", 0.03), actor="a")
    with pytest.raises(InvalidInput):
        propose_tuned(db, "credit_limit", _outcomes(tmp_path), ("bad_rate", 0.03), actor="a")
