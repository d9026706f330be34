"""The console's pictures: per-day decision mix and reason codes counted from stored decisions (against
the decisions the engine returned), the SVG geometry, the supervision gauges, the queue depth (open and
overdue tasks per role, alarm calls), and who may see them."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from callvet.console import charts
from callvet.core.db import Database
from consolesite import console_app, signed_in
from decision_fixtures import make_engine


def test_per_day_counts_match_the_decisions_made(db: Database) -> None:
    from callvet.sim.decision import simulate

    made = make_engine(db).decide_batch(simulate(80, seed=9).applications, actor="test")
    out = charts.decision_days(db, days=3)
    assert out["rows"] == 80 and not out["capped"] and len(out["days"]) == 3
    assert out["days"][-1] == datetime.now(UTC).date().isoformat()
    today = {o: v[-1] for o, v in out["mix"].items() if v[-1]}
    assert today == dict(Counter(d.decision.value for d in made))
    assert all(v[:-1] == [0, 0] for v in out["mix"].values())
    codes = Counter(r.code for d in made for r in d.reasons if r.policy != "credit_limit")
    shown = {c: v[-1] for c, v in out["reasons"].items()}
    assert len(shown) == min(charts.TOP_REASONS, len(codes)) and all(codes[c] == n for c, n in shown.items())
    assert min(shown.values()) >= max([n for c, n in codes.items() if c not in shown], default=0)
    capped = charts.decision_days(db, days=3, max_rows=10)
    assert capped["rows"] == 10 and capped["capped"]
    assert charts.decision_days(db, days=2, now=datetime(2020, 1, 2, tzinfo=UTC))["rows"] == 0


def test_bar_geometry_is_proportional_and_stays_in_the_plot() -> None:
    days = ["2026-12-01", "2026-12-02", "2026-12-03"]
    chart = charts.stacked_bars(days, {"approve": [4, 0, 2], "decline": [4, 1, 0]}, width=330, height=228)
    assert chart["top"] == 8 and chart["totals"] == [8, 1, 2]
    first = [r for r in chart["rects"] if r["day"] == days[0]]
    assert [r["series"] for r in first] == ["approve", "decline"]
    assert first[0]["h"] == pytest.approx(chart["plot"] / 2) and first[1]["y"] == pytest.approx(0)
    assert all(r["y"] >= 0 and r["y"] + r["h"] <= chart["plot"] + 1e-6 for r in chart["rects"])
    assert len(chart["rects"]) == 4  # zero counts draw nothing
    empty = charts.stacked_bars(days, {})
    assert empty["rects"] == [] and empty["top"] == 1
    assert charts.gauge(None)["fill"] == 0 and charts.gauge(None)["label"] == "-"
    assert charts.gauge(0.5, width=200)["fill"] == 100 and charts.gauge(1.7)["label"] == "100.0%"


def test_the_charts_page_for_risk_officers_and_auditors(db: Database, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.sim.decision import simulate

    app = console_app(db, tmp_path, monkeypatch, {"rita": "risk_officer", "ana": "analyst"})
    make_engine(db).decide_batch(simulate(30, seed=2).applications, actor="test")

    def client(name: str) -> Any:
        return signed_in(app, name)

    page = client("rita").get("/console/charts?days=7")
    assert page.status_code == 200
    values = re.findall(r'<rect class="s\d" [^>]*data-value="(\d+)"', page.text)
    mix = page.text.split('data-testid="chart-mix"', 1)[1].split("</svg>", 1)[0]
    assert sum(int(v) for v in re.findall(r'data-value="(\d+)"', mix)) == 30
    assert values and 'data-testid="gauge-coverage"' in page.text
    assert "<script" not in page.text.split("<main>", 1)[1]
    assert 'data-testid="queues"' in page.text
    assert client("ana").get("/console/charts").status_code == 403
    assert client("rita").get("/console/charts?days=1000").status_code == 422


def test_queue_depth_counts_open_and_overdue_tasks_and_alarm_calls(db: Database, tmp_path: Path) -> None:
    import json
    from datetime import timedelta

    from callvet.core.settings import Settings
    from callvet.sim.workflow import scripted_decider
    from callvet.voice.call.store import CallStore
    from callvet.workflow.engine import WorkflowRuntime

    settings = Settings(data_dir=tmp_path, database_url=db.url)
    rt = WorkflowRuntime(db, settings=settings, decide=scripted_decider)
    rt.ensure_ready()
    app = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
    for _ in range(2):
        inst = rt.start("card_issuance", {"application": app}, actor="test")
        rt.deliver_message(inst["instance_id"], "investigation_result",
                           {"investigation": {"questionnaire": {"verdict": "inconclusive"}}}, actor="test")
    store = CallStore(db)
    store.create("k1", "twilio", "robot:test")
    store.add_event("k1", "verdict", {"alarm": True, "net_speech_s": 5.0})
    store.create("k2", "twilio", "robot:test")
    now = charts.queue_depth(db)
    assert now["tasks"] == [{"role": "approver", "open": 2, "overdue": 0}]
    assert now["alarm_calls"] == {"day": 1, "week": 1}
    later = charts.queue_depth(db, now=datetime.now(UTC) + timedelta(days=3))
    assert later["tasks"] == [{"role": "approver", "open": 2, "overdue": 2}]  # due within 24 h
    assert later["alarm_calls"] == {"day": 0, "week": 1}


def test_blacklist_score_histogram_from_the_last_verdict_of_each_call(db: Database) -> None:
    from callvet.voice.call.store import CallStore

    store = CallStore(db)
    for cid, scores in {"a": [0.2, 0.31], "b": [0.75], "c": [0.5], "d": []}.items():
        store.create(cid, "twilio", "robot:test")
        for sc in scores:
            store.add_event(cid, "verdict", {"alarm": sc > 0.7, "threshold": 0.7, "review_threshold": 0.55,
                                             "net_speech_s": 4.0,
                                             "matches": [{"identity_id": 1, "score": sc}]})
    store.add_event("d", "verdict", {"alarm": False, "threshold": 0.7, "matches": []})
    out = charts.blacklist_scores(db)
    assert sorted(out["scores"]) == [0.31, 0.5, 0.75]  # a's last verdict only; d had no match
    assert out["threshold"] == 0.7 and out["review_threshold"] == 0.55
    h = charts.score_histogram(out["scores"], {"alarm": 0.7, "review": 0.55}, bins=4, width=428)
    assert sum(h["counts"]) == 3 and h["counts"][0] == 1 and h["counts"][-1] == 1
    xs = {m["name"]: m["x"] for m in h["marks"]}
    assert h["pad"] < xs["review"] < xs["alarm"] < h["width"]
    empty = charts.score_histogram([], {"alarm": None})
    assert empty["rects"] == [] and empty["marks"] == []
