"""The proof: instant decisions agree with post-investigation decisions on a simulated population."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from callvet.decision.tuning import read_outcomes
from callvet.sim.decision import agreement, simulate, write_outcomes
from decision_fixtures import make_engine


def test_instant_agrees_with_final_on_simulated_population(sqlite_db: Any, tmp_path: Path) -> None:
    eng = make_engine(sqlite_db)
    pop = simulate(4000, seed=3)
    assert 0.01 < pop.fraud.mean() < 0.06
    instant = eng.decide_batch(pop.applications, actor="sim", store=False)
    final = eng.decide_batch(pop.applications, pop.investigations, actor="sim", store=False)
    ag = agreement([d.decision.value for d in instant], [d.decision.value for d in final], pop.fraud)
    assert ag["firm_rate"] > 0.7
    assert ag["agreement_no_new_information"] >= 0.97
    assert ag["agreement_all_firm"] >= 0.96
    fraud_final = np.asarray([d.decision.value for d in final], dtype=object)[pop.fraud]
    assert (fraud_final == "decline").mean() > 0.8
    path = write_outcomes(tmp_path / "o.csv", {"score": np.array([d.score for d in instant])}, pop.bad)
    cols = read_outcomes(path)
    assert len(cols["bad"]) == 4000 and cols["bad"].mean() == pop.bad.mean()
