"""Voice-reuse groups: the links the call server recorded on its verdicts joined transitively into
groups, with each call's application; the analyst's page shows them and only analysts open it.
Supervision findings: an approver rectifies one on the console, with a note, audited under them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from callvet.console import reuse
from callvet.core.db import Database
from callvet.voice.call.frames import StartFrame
from callvet.voice.call.store import CallStore
from consolesite import console_app, csrf, scripted_workflow, signed_in


def _call(store: CallStore, call_id: str, application_id: str) -> None:
    store.create(call_id, "twilio", "robot:test")
    store.start(call_id, StartFrame(protocol="twilio", stream_id=f"s-{call_id}", call_sid=f"c-{call_id}",
                                    sample_rate=8000, encoding="audio/x-mulaw",
                                    params={"application_id": application_id}))


def _verdict(store: CallStore, call_id: str, matches: list[tuple[str, float]],
             reuse_flag: bool = True) -> None:
    store.add_event(call_id, "verdict", {
        "alarm": False, "net_speech_s": 6.0, "voice_reuse": reuse_flag, "reuse_threshold": 0.6,
        "reuse_matches": [{"call_id": c, "score": s, "application_id": f"APP-{c}"} for c, s in matches]})


def test_links_join_transitively() -> None:
    groups = reuse.group_links([("a", "b", 0.7), ("c", "b", 0.9), ("x", "y", 0.95), ("b", "a", 0.8)])
    assert [g["calls"] for g in groups] == [["a", "b", "c"], ["x", "y"]]
    assert groups[0]["best_score"] == 0.9 and groups[0]["links"] == 3
    assert reuse.group_links([]) == []


def test_groups_from_stored_verdicts_and_the_page(db: Database, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:

    store = CallStore(db)
    for cid in ("c1", "c2", "c3", "c4", "c5"):
        _call(store, cid, f"APP-{cid}")
    _verdict(store, "c2", [("c1", 0.71)])
    _verdict(store, "c3", [("c2", 0.83)])
    _verdict(store, "c3", [("c2", 0.88)])  # a later verdict of the same call, a better score
    _verdict(store, "c5", [("c4", 0.99)], reuse_flag=False)  # below threshold: no reuse, no link
    _verdict(store, "c4", [("gone", 0.77)])  # a call whose record was erased since
    out = reuse.reuse_groups(db)
    assert out["verdicts_read"] == 5 and not out["capped"]
    assert [g["calls"] for g in out["groups"]] == [["c1", "c2", "c3"], ["c4", "gone"]]
    first = out["groups"][0]
    assert first["best_score"] == 0.88 and first["applications"] == ["APP-c1", "APP-c2", "APP-c3"]
    gone = next(m for m in out["groups"][1]["members"] if m["call_id"] == "gone")
    assert gone["stored"] is False and gone["application_id"] == "APP-gone"
    assert reuse.reuse_groups(db, max_events=2)["capped"]

    app = console_app(db, tmp_path, monkeypatch, {"ana": "analyst", "bob": "approver"})

    def client(name: str) -> Any:
        return signed_in(app, name)

    page = client("ana").get("/console/reuse")
    assert page.status_code == 200
    assert re.findall(r'data-testid="reuse-group" data-size="(\d+)"', page.text) == ["3", "2"]
    assert 'href="/console/calls/c3"' in page.text and 'href="/console/calls/gone"' not in page.text
    assert client("bob").get("/console/reuse").status_code == 403


def test_findings_are_rectified_with_a_note_by_an_approver(db: Database, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from callvet.core import audit

    app = console_app(db, tmp_path, monkeypatch, {"bob": "approver", "ana": "analyst"})
    rt = scripted_workflow(app, db)
    example = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
    application = {**example, "risk_reasons": [],
                   "employment": {**example["employment"], "monthly_income": 0}}
    rt.start("card_issuance", {"application": application}, actor="test")
    task = rt.board.list_open(role="approver")[0]
    rt.complete_task(task["task_id"], {"review_decision": "approve", "documents": ["id_card"]},
                     actor="approver:test", role="approver")
    open_ = rt.supervisor.findings(status="open")
    assert open_, "approving without income proof breaks an issuance rule"
    bob = signed_in(app, "bob")
    page = bob.get("/console/findings")
    assert page.status_code == 200 and f'data-finding-id="{open_[0]["id"]}"' in page.text
    token = csrf(page.text)
    url = f"/console/findings/{open_[0]['id']}/rectify"
    assert bob.post(url, data={"csrf": token, "note": " "}).status_code == 422
    assert bob.post(url, data={"note": "income proof obtained"}).status_code == 403  # no CSRF token
    r = bob.post(url, data={"csrf": token, "note": "income proof obtained"}, follow_redirects=False)
    assert r.status_code == 303
    assert bob.post(url, data={"csrf": token, "note": "again"}).status_code == 409
    entry = audit.query(db, action="supervision.rectify")[0]
    assert entry["actor"] == "approver:user:bob" and entry["reason"] == "income proof obtained"
    assert len(rt.supervisor.findings(status="open")) == len(open_) - 1
