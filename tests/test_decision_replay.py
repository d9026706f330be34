"""Replaying stored applications through a draft policy before it is proposed
(:mod:`callvet.decision.simulate`): the counts are the draft's own effect, checked against an
independent count on the same stored applications; nothing is stored; the replay is bounded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from callvet.core.errors import InvalidInput
from callvet.decision import simulate, store
from callvet.decision.features import extract
from callvet.decision.tables import decision_records
from callvet.sim.decision import simulate as population
from decision_fixtures import make_engine
from sqlalchemy import func, select


def _stored(db: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(decision_records)).scalar_one())


def _min_age_draft(age: int) -> dict[str, Any]:
    graph = copy.deepcopy(store.shipped_graph("prescreen"))
    table = next(n for n in graph["nodes"] if n["type"] == "decisionTableNode")
    assert table["content"]["rules"][0]["screen_i0"] == "< 18"
    table["content"]["rules"][0]["screen_i0"] = f"< {age}"
    return graph


def test_a_stricter_minimum_age_declines_exactly_the_young_applicants(db: Any) -> None:
    eng = make_engine(db)
    pop = population(300, seed=11)
    decided = eng.decide_batch(pop.applications, actor="test")
    assert _stored(db) == 300
    out = simulate.replay(eng, "prescreen", _min_age_draft(30), limit=1000)
    ages = extract(pop.applications, eng.scorer.encoder).rules["age"]
    expected = sum(1 for d, age in zip(decided, ages, strict=True)
                   if age < 30 and d.decision.value != "decline")
    assert expected > 20  # the population has enough young applicants for the count to mean something
    assert out["replayed"] == 300 and out["skipped"] == 0 and out["active_version"] == 1
    assert out["changed"] == expected
    assert {m["to"] for m in out["transitions"]} == {"decline"}
    assert sum(m["count"] for m in out["transitions"]) == expected
    assert out["draft_mix"]["decline"] - out["active_mix"]["decline"] == expected
    assert sum(out["active_mix"].values()) == sum(out["draft_mix"].values()) == 300
    assert len(out["examples"]) == min(expected, simulate.MAX_EXAMPLES)
    assert all(e["reasons_to"][0] == "underage" for e in out["examples"])
    assert out["changed_limits"] >= sum(1 for m in out["transitions"] if m["from"] == "approve")
    assert _stored(db) == 300  # replay stores nothing


def test_the_active_graph_changes_nothing_and_the_replay_is_bounded(sqlite_db: Any) -> None:
    eng = make_engine(sqlite_db)
    pop = population(40, seed=5)
    eng.decide_batch(pop.applications[:25], actor="test")
    eng.decide_batch(pop.applications[25:], actor="test")
    same = simulate.replay(eng, "prescreen", store.shipped_graph("prescreen"))
    assert same["replayed"] == 40 and same["changed"] == 0 and same["changed_limits"] == 0
    assert same["transitions"] == [] and same["active_mix"] == same["draft_mix"]
    newest = simulate.replay(eng, "prescreen", _min_age_draft(99), limit=15)
    assert newest["replayed"] == 15 and newest["limit"] == 15
    for bad in (0, simulate.MAX_REPLAY + 1):
        with pytest.raises(InvalidInput):
            simulate.replay(eng, "prescreen", _min_age_draft(30), limit=bad)
    with pytest.raises(InvalidInput, match="stored"):
        eng.decide_batch(pop.applications[:1], actor="test", policies=eng.policies())


def test_a_draft_propose_would_refuse_is_refused_the_same_way(sqlite_db: Any) -> None:
    eng = make_engine(sqlite_db)
    broken = _min_age_draft(18)
    table = next(n for n in broken["nodes"] if n["type"] == "decisionTableNode")
    table["content"]["rules"][-1]["screen_o0"] = '"maybe"'
    with pytest.raises(InvalidInput, match="maybe"):
        simulate.replay(eng, "prescreen", broken)
    with pytest.raises(InvalidInput, match="maybe"):
        store.propose(sqlite_db, "prescreen", broken, actor="risk_officer:x")
    empty = simulate.replay(eng, "prescreen", _min_age_draft(30))
    assert empty["replayed"] == 0 and empty["changed"] == 0
