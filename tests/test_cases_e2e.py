"""One investigation case end to end, all through a real uvicorn server: HTTP intake and pre-screen, the
robot's claim, the call over a real WebSocket joined to its case by the one-time token (real espeak-ng
speech, real VAD, real voiceprint blacklist, the real interview), the investigation-outcome decision,
and the workflow's card, decline or review task."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from callserver import ServerThread
from callvet.api.app import create_app
from callvet.cases.tables import cases
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.settings import Settings
from callvet.sim.questionnaire import GenuineApplicant, Guesser, make_application
from casecall import place_call
from speech import espeak, to_wav_bytes
from sqlalchemy import select

ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
FRAUDSTER = "en-us+m3"
GENUINE = "en-us+f2"
FLAGS = ["new_device", "address_mismatch"]


def _application(seed: int, app_id: str) -> dict[str, Any]:
    a = next(a for a in (make_application(s) for s in range(seed, seed + 100)) if a.lang == "en")
    a = a.model_copy(update={"credit_profile": None, "bank_relationship": None, "application_id": app_id,
                             "risk_reasons": FLAGS})
    return a.model_dump(mode="json")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d: Path = tmp_path_factory.mktemp("cases")
    settings = Settings(data_dir=d, database_url=f"sqlite:///{d / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app = create_app(settings, db)
    keys = {r.value: auth.create_key(db, r.value, f"t-{r.value}") for r in auth.Role}
    bl = app.state.ctx.blacklist
    ident = bl.create_identity("fraudster-m3", "test voice", "test")
    bl.add_sample(ident["id"], to_wav_bytes(espeak(ENROL, FRAUDSTER), 16000), "test")
    from callvet.api.routes.workflow import runtime

    runtime(app.state.ctx).board.upsert_user("alice", role="approver", skills=["card"], max_amount=100000,
                                             name="Alice Zhou", actor="t")
    with ServerThread(app) as srv, httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=120) as c:
        yield {"srv": srv, "keys": keys, "http": c, "identity": ident["id"], "db": db}


def _h(env: dict[str, Any], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['keys'][role]}"}


def _submit(env: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    r = env["http"].post("/v1/applications", json={"application": app,
                                                   "call_window": {"timezone": "UTC", "start_hour": 0,
                                                                   "end_hour": 24}},
                         headers=_h(env, "robot"))
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["status"] == "awaiting_call" and case["next"] == "investigation_call"
    assert case["decision"]["prescreen"] == "refer_investigation"
    return case  # type: ignore[no-any-return]


def _claim(env: dict[str, Any], case_id: str) -> dict[str, Any]:
    r = env["http"].post("/v1/robot/calls:claim", headers=_h(env, "robot"))
    assert r.status_code == 200, r.text
    claim = r.json()
    assert claim["case_id"] == case_id and claim["custom_parameters"]["case_id"] == case_id
    assert claim["stream_url"].startswith("ws://") and "token" not in claim["stream_url"]
    assert env["keys"]["robot"] not in claim["stream_url"]
    return claim  # type: ignore[no-any-return]


def _settled(env: dict[str, Any], case_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = env["http"].get(f"/v1/cases/{case_id}", headers=_h(env, "analyst"))
        assert r.status_code == 200, r.text
        case = r.json()
        if case["status"] in ("declined", "issued", "review") or time.monotonic() > deadline:
            return case  # type: ignore[no-any-return]
        time.sleep(0.2)


def _kinds(case: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in case["timeline"]]


def test_blacklisted_voice_is_declined(env: dict[str, Any]) -> None:
    app = _application(10_300, "case-fraud-1")
    case = _submit(env, app)
    claim = _claim(env, case["case_id"])
    caller = GenuineApplicant(make_application(10_300).model_copy(update={"credit_profile": None,
                                                                          "bank_relationship": None}),
                              random.Random(5))
    events = asyncio.run(place_call(claim, FRAUDSTER, caller.respond, max_questions=3,
                                    extra_speech=ENROL))
    verdicts = [e for e in events if e.get("event") == "callvet.voiceprint"]
    assert verdicts and any(v["alarm"] for v in verdicts)
    case = _settled(env, case["case_id"])
    assert case["status"] == "declined", case
    assert case["decision"]["final"] == "decline"
    assert "voiceprint_blacklist_match" in [r["code"] for r in case["decision"]["reasons"]["final"]]
    assert case["evidence"]["voiceprint"]["confirmed_alarm"] is True
    assert case["evidence"]["voiceprint"]["best_match"]["identity_id"] == env["identity"]
    started = next(e for e in events if e.get("event") == "callvet.started")
    assert case["call_ids"] == [started["call_id"]]
    kinds = _kinds(case)
    for k in ("received", "prescreened", "call_requested", "call_claimed", "call_started", "call_ended",
              "decided"):
        assert kinds.count(k) == 1, (k, kinds)
    assert kinds.index("call_ended") < kinds.index("decided")
    # The token opened one stream: replaying it is refused before any audio is taken.
    again = asyncio.run(place_call(claim, FRAUDSTER, caller.respond, max_questions=0, timeout_s=5))
    assert [e["code"] for e in again if e.get("event") == "callvet.error"] == ["stream_token_invalid"]


def test_clean_genuine_applicant_is_issued_with_limit(env: dict[str, Any]) -> None:
    app = _application(10_300, "case-clean-1")
    case = _submit(env, app)
    # Resubmission: the same case, 200, nothing new started.
    r = env["http"].post("/v1/applications", json={"application": app}, headers=_h(env, "robot"))
    assert r.status_code == 200 and r.json()["case_id"] == case["case_id"]
    claim = _claim(env, case["case_id"])
    base = make_application(10_300).model_copy(update={"credit_profile": None, "bank_relationship": None})
    caller = GenuineApplicant(base, random.Random(5))
    events = asyncio.run(place_call(claim, GENUINE, caller.respond))
    result = [e for e in events if e.get("event") == "callvet.interview_result"]
    assert result and result[0]["verdict"] == "pass"
    assert not any(v["alarm"] for v in events if v.get("event") == "callvet.voiceprint")
    case = _settled(env, case["case_id"])
    assert case["status"] == "issued", case
    assert case["decision"]["final"] == "approve" and case["decision"]["credit_limit"] > 0
    assert case["interview_result"]["verdict"] == "pass"
    listed = env["http"].get("/v1/cases?status=issued", headers=_h(env, "analyst")).json()["cases"]
    assert case["case_id"] in {c["case_id"] for c in listed}


def test_failed_interview_goes_to_review_with_evidence(env: dict[str, Any]) -> None:
    app = _application(10_300, "case-guess-1")
    case = _submit(env, app)
    claim = _claim(env, case["case_id"])
    base = make_application(10_300).model_copy(update={"credit_profile": None, "bank_relationship": None})
    caller = Guesser(base, random.Random(11))
    events = asyncio.run(place_call(claim, GENUINE, caller.respond))
    result = [e for e in events if e.get("event") == "callvet.interview_result"]
    assert result and result[0]["verdict"] == "fail", result
    case = _settled(env, case["case_id"])
    assert case["status"] == "review", case
    tasks = [t for t in case["workflow"]["tasks"] if t["status"] == "open"]
    assert len(tasks) == 1
    tid = tasks[0]["task_id"]
    got = env["http"].get(f"/v1/tasks/{tid}", headers=_h(env, "approver")).json()
    fields = got["form"]["fields"]
    assert fields["review_decision"]["enum"] == ["approve", "decline"]
    assert fields["review_decision"]["required"]
    assert got["evidence"]["interview_result"]["verdict"] == "fail"
    assert "questionnaire_failed" in got["evidence"]["review_flags"]
    assert got["evidence"]["case_id"] == case["case_id"]
    assert got["evidence"]["voiceprint"]["voiceprint"]["confirmed_alarm"] is False
    # A misspelt field is refused, naming it; nothing changes.
    bad = env["http"].post(f"/v1/tasks/{tid}/complete", json={"data": {"review_decison": "approve"}},
                           headers=_h(env, "approver"))
    assert bad.status_code == 422 and bad.json()["field"] == "review_decison"
    bad = env["http"].post(f"/v1/tasks/{tid}/complete", json={"data": {"review_decision": "approved"}},
                           headers=_h(env, "approver"))
    assert bad.status_code == 422 and bad.json()["field"] == "review_decision"
    assert "approve, decline" in bad.json()["detail"]
    ok = env["http"].post(f"/v1/tasks/{tid}/complete",
                          json={"data": {"review_decision": "decline", "review_note": "Could not answer."}},
                          headers=_h(env, "approver"))
    assert ok.status_code == 200, ok.text
    # The completion moved the case itself (the workflow's finish hook), before anyone reads the case.
    with env["db"].connect() as conn:
        row = conn.execute(select(cases.c.status, cases.c.final_decision)
                           .where(cases.c.case_id == case["case_id"])).one()
    assert row.status == "declined" and row.final_decision is not None, row
    listed = env["http"].get("/v1/cases", params={"status": "review"}, headers=_h(env, "analyst")).json()
    assert case["case_id"] not in [c["case_id"] for c in listed["cases"]]
    got = env["http"].get(f"/v1/cases/{case['case_id']}", headers=_h(env, "analyst")).json()
    assert got["status"] == "declined"
    assert [e["data"]["review_decision"] for e in got["timeline"] if e["kind"] == "reviewed"] == ["decline"]


def test_bad_intake_and_roles(env: dict[str, Any]) -> None:
    c = env["http"]
    app = _application(10_300, "case-bad-1")
    app["applicant"]["mobile"] = "call me"
    r = c.post("/v1/applications", json={"application": app}, headers=_h(env, "robot"))
    assert r.status_code == 422 and r.json()["field"] == "application.applicant.mobile"
    r = c.post("/v1/applications", json={"application": _application(10_300, "x"), "process": "mortgage"},
               headers=_h(env, "robot"))
    assert r.status_code == 422 and r.json()["field"] == "process"
    assert c.post("/v1/robot/calls:claim", headers=_h(env, "analyst")).status_code == 403
    assert c.post("/v1/applications", json={}, headers=_h(env, "approver")).status_code == 403
    assert c.get("/v1/cases?status=nope", headers=_h(env, "analyst")).status_code == 422
    assert c.get("/v1/cases?limit=5000", headers=_h(env, "analyst")).status_code == 422
