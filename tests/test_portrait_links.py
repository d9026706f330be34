"""Portrait links: a known customer's high risk tag reaches the pre-screen as a risk flag, and facts the
form never held reach the interview; unknown customers and an unbuilt portrait change nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from callvet.core.application import Application
from callvet.core.db import Database
from callvet.portrait import links, service
from callvet.portrait.generate import BankSpec, generate
from decision_fixtures import example, make_engine

Api = tuple[Any, dict[str, dict[str, str]]]


@pytest.fixture(scope="module")
def bank_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bank built once (tags and models); tests copy it, first without its build."""
    root = tmp_path_factory.mktemp("links")
    generate(root / "bank", BankSpec(n_customers=2000, seed=77))
    db = Database(f"sqlite:///{root}/build.db")
    db.create_schema()
    service.build(db, root / "bank", actor="t")
    db.engine.dispose()
    return root / "bank"


def _copy(src: Path, dst: Path, *, built: bool) -> None:
    shutil.copytree(src, dst, ignore=None if built else shutil.ignore_patterns("tags.parquet", "build.json"),
                    dirs_exist_ok=True)


def _customers(bank: Path) -> tuple[int, int]:
    t = pq.read_table(bank / "tags.parquet", columns=["customer_id", "risk_level"]).to_pandas()
    high = t[t.risk_level == "high"].customer_id.iloc[0]
    return int(high), int(t[t.risk_level == "low"].customer_id.iloc[0])


def _app(customer_id: int | None, **rel: Any) -> dict[str, Any]:
    return example(
        application_id=f"L-{customer_id}", risk_reasons=[],
        bank_relationship={"customer_id": customer_id, **rel} if customer_id else None,
    )


def test_enrich_fills_only_empty_facts_and_flags_high_risk(bank_src: Path, tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    _copy(bank_src, bank, built=False)
    assert links.lookup(bank, [1, 2]) == {}
    _copy(bank_src, bank, built=True)
    high, low = _customers(bank)
    apps = [Application.model_validate(a) for a in (_app(high), _app(low, cards_held=9), _app(None),
                                                     _app(10**9))]
    out, known = links.enrich(bank, apps)
    assert out[0].risk_reasons == [links.HIGH_RISK_FLAG] and known[0]["risk_level"] == "high"
    assert out[0].bank_relationship is not None and out[0].bank_relationship.cards_held is not None
    assert out[1].risk_reasons == [] and out[1].bank_relationship.cards_held == 9
    assert "cards_held" not in known[1]["filled"]
    assert out[2] is apps[2] and known[2] is None
    assert out[3] is apps[3] and known[3] is None
    again, _ = links.enrich(bank, out[:1])
    assert again[0].risk_reasons == [links.HIGH_RISK_FLAG]
    with pytest.raises(ValueError):
        links.lookup(bank, list(range(1, links.MAX_LOOKUP + 2)))


def test_decision_and_interview_routes_read_the_portrait(api: Api, bank_src: Path) -> None:
    client, h = api
    ctx = client.app.state.ctx
    ctx.service("decision", lambda c: make_engine(c.db))
    bank = service.default_bank(ctx.settings)
    _copy(bank_src, bank, built=False)
    before = client.post("/v1/decisions", json={"application": _app(5)}, headers=h["robot"])
    assert before.status_code == 200 and "portrait" not in before.json()
    _copy(bank_src, bank, built=True)
    high, low = _customers(bank)
    r = client.post("/v1/decisions", json={"application": _app(high)}, headers=h["robot"])
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["portrait"]["risk_level"] == "high"
    stored = client.get(f"/v1/decisions/{d['decision_id']}", headers=h["auditor"]).json()
    assert links.HIGH_RISK_FLAG in stored["application"]["risk_reasons"]
    plain = client.post("/v1/decisions", json={"application": _app(None)}, headers=h["robot"]).json()
    assert "portrait" not in plain
    batch = client.post("/v1/decisions:batch", json={"items": [{"application": _app(low)},
                                                               {"application": _app(None)}]},
                        headers=h["robot"]).json()["items"]
    assert batch[0]["portrait"]["risk_level"] == "low" and "portrait" not in batch[1]
    r = client.post("/v1/interviews", json={"application": _app(high)}, headers=h["robot"])
    assert r.status_code == 201, r.text
    bad = client.post("/v1/decisions", json={"application": _app(-3)}, headers=h["robot"])
    assert bad.status_code == 422
