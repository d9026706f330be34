"""Portrait: generator truth, definitions, versions and maker-checker, explanations, exclusions, roles."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from callvet.core.db import Database
from callvet.core.errors import Conflict, Forbidden, InvalidInput
from callvet.portrait import service, store, tags
from callvet.portrait.generate import BankSpec, generate, simulate_campaign

RULE_DIMS = ("risk_level", "value", "stickiness", "preference", "lifecycle")


@pytest.fixture(scope="module")
def bank_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bank") / "bank"
    generate(out, BankSpec(n_customers=6000, seed=101))
    return out


@pytest.fixture
def built(db: Database, bank_src: Path, tmp_path: Path) -> tuple[Database, Path]:
    bank = tmp_path / "bank"
    shutil.copytree(bank_src, bank)
    service.build(db, bank, actor="test:build")
    return db, bank


def test_generator_is_seeded_and_chunking_does_not_change_sizes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", BankSpec(n_customers=3000, seed=5))
    b = generate(tmp_path / "b", BankSpec(n_customers=3000, seed=5))
    c = generate(tmp_path / "c", BankSpec(n_customers=3000, seed=6))
    assert a["rows"] == b["rows"] and a["rows"] != c["rows"]
    t = pq.read_table(tmp_path / "a" / "transactions.parquet")
    assert t.num_rows > 3000 * 30 and (t["day"].to_numpy() < 360).all()
    with pytest.raises(ValueError):
        BankSpec(n_customers=0)


def test_rule_tags_recover_the_hidden_truth_on_a_held_out_seed(bank_src: Path) -> None:
    con = tags.connect(bank_src)
    truth = pq.read_table(bank_src / "truth.parquet").to_pandas().set_index("customer_id")
    for dim in RULE_DIMS:
        out = tags.run_definition(con, tags.shipped_definition(dim), as_of_day=360).to_pandas()
        out = out.set_index("customer_id")
        agree = (out.tag == truth.loc[out.index, dim].astype(str)).mean()
        assert agree >= 0.95, (dim, agree)


def test_definitions_reject_bad_input() -> None:
    good = tags.shipped_definition("value")
    for bad in (
        {**good, "facts_sql": "DELETE FROM customers"},
        {**good, "facts_sql": "SELECT 1; SELECT 2"},
        {**good, "kind": "model"},
        {**good, "rules": [{"tag": "gold", "when": "aum > 1"}]},
        {**good, "thresholds": {"x": "1; DROP"}},
        {**good, "rules": [{"tag": "high", "when": "aum > {missing}"}]},
        "not an object",
    ):
        with pytest.raises(InvalidInput):
            tags.validate_definition(bad, "value")
    tags.validate_definition(good, "value")


def test_definitions_cannot_read_files_outside_the_bank(bank_src: Path) -> None:
    con = tags.connect(bank_src)
    defn = {
        **tags.shipped_definition("value"),
        "facts_sql": "SELECT 1 AS customer_id FROM read_csv('/etc/passwd')",
    }
    with pytest.raises(InvalidInput):
        tags.run_definition(con, defn, as_of_day=360)


def test_jdm_table_compiled_to_sql_equals_zen(bank_src: Path) -> None:
    import zen

    defn = tags.shipped_definition("risk_level")
    out = tags.run_definition(tags.connect(bank_src), defn, as_of_day=360).to_pylist()
    decision = zen.ZenEngine().create_decision(json.dumps(defn["graph"]))
    rng = np.random.default_rng(0)
    rows = [out[i] for i in rng.choice(len(out), 600, replace=False)]
    rows += [r for r in out if r["tag"] == "high"][:100]
    for r in rows:
        facts = {k: float(r[k]) for k in ("max_dpd_12m", "late_months_12m", "returned_debits_12m")}
        assert decision.evaluate(facts)["result"]["tag"] == r["tag"], facts


def test_versions_and_maker_checker(db: Database) -> None:
    store.seed(db)
    assert {d["dimension"]: d["active_version"] for d in store.list_dimensions(db)} == dict.fromkeys(
        tags.DIMENSIONS, 1
    )
    defn = copy.deepcopy(tags.shipped_definition("value"))
    defn["thresholds"]["high_contribution"] = 5000
    v = store.propose(db, "value", defn, actor="marketer:a", note="stricter")
    assert v["version"] == 2 and v["status"] == "proposed"
    assert store.active_definitions(db)["value"][0] == 1
    with pytest.raises(Forbidden):
        store.activate(db, "value", 2, actor="marketer:a")
    store.activate(db, "value", 2, actor="approver:b")
    assert store.active_definitions(db)["value"] == (2, defn)
    assert store.get_version(db, "value", 1)["status"] == "retired"
    with pytest.raises(Conflict):
        store.activate(db, "value", 1, actor="approver:b")
    from callvet.core import audit

    actions = [a["action"] for a in audit.query(db, target_type="portrait_tag", target_id="value@2")]
    assert actions == ["portrait_tag.activate", "portrait_tag.propose"]


def test_portrait_explains_every_tag(built: tuple[Database, Path]) -> None:
    db, bank = built
    p = service.portrait(db, bank, 17)
    assert set(p["tags"]) == set(tags.DIMENSIONS)
    for dim, exp in p["explanations"].items():
        assert exp["tag"] == p["tags"][dim] and exp["facts"] and "when" in exp["rule"]
    risk = p["explanations"]["risk_level"]
    assert risk["zen_tag"] == risk["tag"]
    value = p["explanations"]["value"]
    th = value["thresholds"]
    c = value["facts"]["contribution_12m"]
    expected = (
        "high" if c >= th["high_contribution"] else "medium" if c >= th["medium_contribution"] else "low"
    )
    assert value["tag"] == expected
    assert p["explanations"]["response"]["facts"]["score"] >= 0


def test_new_active_version_changes_the_next_build(built: tuple[Database, Path]) -> None:
    db, bank = built
    defn = copy.deepcopy(tags.shipped_definition("value"))
    defn["thresholds"] = {"high_contribution": 1e9, "medium_contribution": 1e9}
    store.propose(db, "value", defn, actor="marketer:a")
    store.activate(db, "value", 2, actor="approver:b")
    info = service.build(db, bank, actor="t", retrain=False)
    assert info["versions"]["value"] == 2
    t = pq.read_table(bank / "tags.parquet", columns=["value"])
    assert set(t["value"].to_pylist()) == {"low"}
    assert service.portrait(db, bank, 3)["explanations"]["value"]["version"] == 2


def test_selection_honours_every_exclusion(built: tuple[Database, Path]) -> None:
    db, bank = built
    req = service.SegmentRequest(size=100_000, reason="card offer Q1", contact_window_days=45)
    res = service.select_segment(db, bank, req, actor="marketer:m")
    chosen = [c["customer_id"] for c in res["customers"]]
    assert res["counts"]["selected"] == len(chosen) > 50
    # Every exclusion must actually remove someone on this bank, or the checks below prove nothing.
    for k in ("high_risk", "no_consent", "recent_contact", "card_holder"):
        assert res["counts"][f"excluded_{k}"] > 0, k
    t = pq.read_table(
        bank / "tags.parquet", columns=["customer_id", "risk_level", "response__score"]
    ).to_pandas()
    t = t.set_index("customer_id")
    cust = pq.read_table(bank / "customers.parquet").to_pandas().set_index("customer_id")
    contacts = pq.read_table(bank / "contacts.parquet").to_pandas()
    cards = pq.read_table(bank / "cards.parquet").to_pandas()
    recent = set(contacts[contacts.day >= 360 - 45].customer_id)
    holders = set(cards[(cards.kind == "credit") & (cards.status == "active")].customer_id)
    for cid in chosen:
        assert t.loc[cid, "risk_level"] != "high"
        assert bool(cust.loc[cid, "marketing_consent"])
        assert cid not in recent and cid not in holders
    eligible = set(t.index) - set(t[t.risk_level == "high"].index) - set(cust[~cust.marketing_consent].index)
    eligible -= recent | holders
    assert set(chosen) == eligible
    scores = [c["score"] for c in res["customers"]]
    assert scores == sorted(scores, reverse=True)
    stored = service.get_segment(db, res["segment_id"])
    assert stored["requested_by"] == "marketer:m" and stored["reason"] == "card offer Q1"
    assert [c["customer_id"] for c in stored["customers"]] == chosen


def test_selection_filters_and_product(built: tuple[Database, Path]) -> None:
    db, bank = built
    req = service.SegmentRequest(
        filters={"value": ["high"], "lifecycle": ["mature", "growing"]},
        size=20,
        reason="premium",
        product="platinum",
    )
    res = service.select_segment(db, bank, req, actor="m")
    t = pq.read_table(bank / "tags.parquet", columns=["customer_id", "value", "lifecycle"]).to_pandas()
    t = t.set_index("customer_id")
    assert 0 < len(res["customers"]) <= 20
    for c in res["customers"]:
        assert t.loc[c["customer_id"], "value"] == "high"
        assert t.loc[c["customer_id"], "lifecycle"] in ("mature", "growing")
    with pytest.raises(InvalidInput):
        service.select_segment(
            db, bank, service.SegmentRequest(filters={"value": ["gold"]}, size=5, reason="bad"), actor="m"
        )


def test_product_exclusion_is_per_product(built: tuple[Database, Path]) -> None:
    db, bank = built
    cards = pq.read_table(bank / "cards.parquet").to_pandas()
    credit = cards[(cards.kind == "credit") & (cards.status == "active")]
    platinum = set(credit[credit["product"] == "platinum"].customer_id)
    others = set(credit.customer_id) - platinum
    req = service.SegmentRequest(size=100_000, reason="platinum upgrade", product="platinum")
    chosen = {c["customer_id"] for c in service.select_segment(db, bank, req, actor="m")["customers"]}
    assert chosen and not chosen & platinum
    assert chosen & others, "holders of another product stay eligible for a platinum offer"


def test_response_features_mean_the_same_at_cutoff_and_as_of(bank_src: Path) -> None:
    """The response model is trained on facts 90 days before the as-of day and scores on facts at it;
    its columns must be the same, complete, and its bands and flags 0/1 at both."""
    from callvet.portrait.propensity import LABEL_WINDOW, _matrix

    con = tags.connect(bank_src)
    defn = tags.shipped_definition("response")
    ids_t, x_t, names_t = _matrix(con, defn, 360 - LABEL_WINDOW)
    ids_s, x_s, names_s = _matrix(con, defn, 360)
    con.close()
    assert names_t == names_s and len(names_t) == len(set(names_t))
    assert sorted(ids_t) == sorted(ids_s) and np.isfinite(x_t).all() and np.isfinite(x_s).all()
    flags = [i for i, n in enumerate(names_s) if n.startswith(("aum_", "trend_", "silent_", "has_", "is_"))]
    assert len(flags) >= 6
    for x in (x_t, x_s):
        assert set(np.unique(x[:, flags])) <= {0.0, 1.0}
    # A silent last month and a rising trend are each a minority at both dates (growing and dormant
    # customers): a window that shifted with the date would empty or flood one of them.
    for name in ("silent_30d", "trend_up"):
        col = names_s.index(name)
        assert 0.03 < x_s[:, col].mean() < 0.3 and 0.03 < x_t[:, col].mean() < 0.3, name


def test_training_reports_features_that_shift_between_cutoff_and_as_of(
    bank_src: Path, tmp_path: Path
) -> None:
    """The previous response definition's calendar-anchored flag is caught; the shipped ones pass."""
    from callvet.portrait import propensity

    con = tags.connect(bank_src)
    try:
        for dim in ("response", "card_binding"):
            card = propensity.train(con, tags.shipped_definition(dim), tmp_path / "ok", as_of_day=360)
            assert card["metrics"]["shifted_features"] == [], (dim, card["feature_shift_sd"])
            assert set(card["feature_shift_sd"]) == set(card["features"])
        peer = json.loads((Path(__file__).parents[1] / "bench/portrait/peer_response_v1.json").read_text())
        card = propensity.train(con, peer, tmp_path / "peer", as_of_day=360)
    finally:
        con.close()
    assert "trend_declining" in card["metrics"]["shifted_features"]
    assert card["feature_shift_sd"]["trend_declining"] > 5


def test_risk_retuning_is_a_proposal(built: tuple[Database, Path]) -> None:
    db, bank = built
    v = service.propose_risk_tuning(db, bank, target_bad_rate=0.02, actor="risk_officer:r")
    assert v["status"] == "proposed" and v["expected_effect"]["after"]["bad_rate_kept"] <= 0.02
    assert store.active_definitions(db)["risk_level"][0] == 1


def test_links_for_decision_and_questionnaire(built: tuple[Database, Path]) -> None:
    _, bank = built
    tags_ = service.decision_tags(bank, 9)
    assert tags_ is not None and tags_["risk_level"] in ("low", "medium", "high")
    assert service.decision_tags(bank, 10**9) is None
    facts = service.customer_facts(bank, 9)
    assert set(facts) == {"recent_transaction", "bound_payment_apps"}


def test_response_model_ranks_a_later_campaign(built: tuple[Database, Path]) -> None:
    _, bank = built
    s = pq.read_table(bank / "tags.parquet", columns=["customer_id", "response__score"]).to_pandas()
    score = dict(zip(s.customer_id, s.response__score, strict=True))
    camp = simulate_campaign(bank, seed=2027, fraction=1.0)
    p = np.array([score[c] for c in camp["customer_id"]])
    y = camp["responded"]
    top = np.argsort(-p)[: len(p) // 10]
    assert y[top].mean() > 2 * y.mean()
    card = json.loads((bank / "models" / "response" / "card.json").read_text())
    assert card["onnx_max_abs_diff_vs_sklearn"] < 1e-4


def test_import_round_trip_from_csv(bank_src: Path, tmp_path: Path, db: Database) -> None:
    import duckdb

    src = tmp_path / "csv"
    src.mkdir()
    for t in ("customers", "accounts", "cards", "transactions", "mcc", "bindings", "contacts", "repayments"):
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{bank_src / t}.parquet')) TO '{src / t}.csv' (HEADER)")
    bank = tmp_path / "imported"
    service.import_tables(src, bank, as_of_day=360)
    service.build(db, bank, actor="t")
    a = pq.read_table(bank / "tags.parquet", columns=["customer_id", *RULE_DIMS]).to_pandas()
    b = tags.run_definition(
        tags.connect(bank_src), tags.shipped_definition("value"), as_of_day=360
    ).to_pandas()
    assert (
        a.sort_values("customer_id").value.to_numpy() == b.sort_values("customer_id").tag.to_numpy()
    ).all()
    (src / "mcc.csv").unlink()
    with pytest.raises(InvalidInput):
        service.import_tables(src, tmp_path / "x", as_of_day=360)


def test_api_roles_and_routes(api: tuple[Any, dict[str, dict[str, str]]], bank_src: Path) -> None:
    client, headers = api
    ctx = client.app.state.ctx
    bank = service.default_bank(ctx.settings)
    shutil.copytree(bank_src, bank)
    service.build(ctx.db, bank, actor="t")
    body = {"size": 10, "reason": "spring card offer", "filters": {"value": ["medium", "high"]}}
    assert client.post("/v1/portrait/segments", json=body).status_code == 401
    for role in ("analyst", "robot", "auditor", "approver"):
        assert client.post("/v1/portrait/segments", json=body, headers=headers[role]).status_code == 403
    r = client.post("/v1/portrait/segments", json=body, headers=headers["marketer"])
    assert r.status_code == 201, r.text
    seg = r.json()
    assert seg["requested_by"].startswith("marketer:") and len(seg["customers"]) <= 10
    assert (
        client.get(f"/v1/portrait/segments/{seg['segment_id']}", headers=headers["auditor"]).status_code
        == 200
    )
    assert (
        client.post(
            "/v1/portrait/segments", json={**body, "size": 0}, headers=headers["marketer"]
        ).status_code
        == 422
    )
    cid = seg["customers"][0]["customer_id"] if seg["customers"] else 1
    assert client.get(f"/v1/portrait/customers/{cid}", headers=headers["robot"]).status_code == 403
    r = client.get(f"/v1/portrait/customers/{cid}", headers=headers["marketer"])
    assert r.status_code == 200 and set(r.json()["tags"]) == set(tags.DIMENSIONS)
    assert client.get("/v1/portrait/customers/999999999", headers=headers["marketer"]).status_code == 404
    defn = copy.deepcopy(tags.shipped_definition("stickiness"))
    defn["thresholds"]["high_accounts"] = 4
    r = client.post("/v1/portrait/tags/stickiness/versions", json=defn, headers=headers["marketer"])
    assert r.status_code == 201, r.text
    assert (
        client.post(
            "/v1/portrait/tags/stickiness/versions/2/activate", headers=headers["marketer"]
        ).status_code
        == 403
    )
    r = client.post("/v1/portrait/tags/stickiness/versions/2/activate", headers=headers["approver"])
    assert r.status_code == 200 and r.json()["status"] == "active"
    bad = {**defn, "facts_sql": "DROP TABLE customers"}
    r = client.post("/v1/portrait/tags/stickiness/versions", json=bad, headers=headers["risk_officer"])
    assert r.status_code == 422 and r.json()["code"] == "invalid_definition"
