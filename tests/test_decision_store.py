from __future__ import annotations

from typing import Any

import pytest
from callvet.core import audit
from callvet.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from callvet.decision import store
from callvet.decision.store import PolicyStatus
from callvet.decision.tuning import scale_thresholds
from decision_fixtures import example, make_engine


def test_seed_once_as_active_version_1(db: Any) -> None:
    assert store.seed(db) == list(store.POLICY_NAMES)
    assert store.seed(db) == []
    listed = {p["name"]: p for p in store.list_policies(db)}
    assert all(p["active_version"] == 1 and p["versions"] == 1 for p in listed.values())
    assert store.get_version(db, "prescreen", 1)["content"] == store.shipped_graph("prescreen")
    assert len(audit.query(db, target_type="policy", action="policy.activate")) == 3


def test_status_transitions() -> None:
    assert PolicyStatus.PROPOSED.can_become(PolicyStatus.ACTIVE)
    assert not PolicyStatus.RETIRED.can_become(PolicyStatus.ACTIVE)
    assert not PolicyStatus.ACTIVE.can_become(PolicyStatus.PROPOSED)
    assert not PolicyStatus.REJECTED.can_become(PolicyStatus.ACTIVE)


def test_propose_activate_maker_checker_and_engine_cache(db: Any) -> None:
    eng = make_engine(db)
    app = example(risk_reasons=[])
    assert eng.decide(app, actor="t", store=False).decision.value == "approve"
    strict = scale_thresholds(store.shipped_graph("prescreen"), "score", 0.1)
    row = store.propose(db, "prescreen", strict, actor="risk_officer:ann", note="tighten")
    assert (row["version"], row["status"]) == (2, "proposed")
    assert eng.decide(app, actor="t", store=False).policy_versions["prescreen"] == 1
    with pytest.raises(Forbidden):
        eng.activate("prescreen", 2, actor="risk_officer:ann")
    assert store.get_version(db, "prescreen", 2)["status"] == "proposed"
    eng.activate("prescreen", 2, actor="approver:bob", reason="reviewed")
    d = eng.decide(app, actor="t", store=False)
    assert d.policy_versions["prescreen"] == 2 and d.decision.value == "decline"
    statuses = {v["version"]: v["status"] for v in store.list_versions(db, "prescreen")}
    assert statuses == {1: "retired", 2: "active"}
    with pytest.raises(Conflict):
        store.activate(db, "prescreen", 1, actor="approver:bob")
    entries = audit.query(db, target_type="policy", target_id="prescreen@2")
    assert [e["action"] for e in entries] == ["policy.activate", "policy.propose"]
    assert entries[0]["actor"] == "approver:bob"
    assert entries[0]["details"]["proposed_by"] == "risk_officer:ann"


def test_other_process_activation_is_picked_up(db: Any) -> None:
    eng = make_engine(db)
    eng.refresh_seconds = 0.0
    store.propose(db, "credit_limit", store.shipped_graph("credit_limit"), actor="a")
    store.activate(db, "credit_limit", 2, actor="b")
    assert eng.policies()["credit_limit"].version == 2


def test_bad_graphs_and_names(db: Any) -> None:
    store.seed(db)
    with pytest.raises(InvalidInput):
        store.propose(db, "prescreen", {"nodes": "x"}, actor="a")
    with pytest.raises(InvalidInput):
        store.propose(db, "prescreen", {"nodes": [{"id": "a", "type": "inputNode"}], "edges": []}, actor="a")
    with pytest.raises(NotFound):
        store.propose(db, "nope", store.shipped_graph("prescreen"), actor="a")
    with pytest.raises(InvalidInput, match="must output"):
        store.propose(db, "credit_limit", store.shipped_graph("prescreen"), actor="a")
    wrong = store.shipped_graph("prescreen")
    wrong["nodes"][2]["content"]["rules"][-1]["screen_o0"] = '"maybe"'
    with pytest.raises(InvalidInput, match="not one of"):
        store.propose(db, "prescreen", wrong, actor="a")
    with pytest.raises(NotFound):
        store.activate(db, "prescreen", 9, actor="b")
    row = store.propose(db, "prescreen", store.shipped_graph("prescreen"), actor="a")
    store.reject(db, "prescreen", row["version"], actor="b")
    with pytest.raises(Conflict):
        store.activate(db, "prescreen", row["version"], actor="b")
