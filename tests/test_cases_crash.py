"""Exactly once from call end to decision, with real SIGKILLs of a real server process.

Server A records two calls' ends but does not pump (``CALLVET_CASES_PUMP=0``), then is SIGKILLed.
Server B pumps and is SIGKILLed by its failpoint right after the first workflow took the result and
before the pump marked it delivered. Server C finishes. Each case must end with one result message, one
investigation decision, one review task and one ``decided`` event: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from callvet.core import auth
from callvet.core.db import Database
from casecall import place_call
from sqlalchemy import func, select

SPEECH = ("Hello, yes, this is me speaking. I applied for the card last week at the branch near my office "
          "and I am happy to answer your questions.")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "CALLVET_DATA_DIR": str(tmp), "CALLVET_DATABASE_URL": f"sqlite:///{tmp / 'cv.db'}",
            "CALLVET_CASES_INTERVIEWS": "0", **env}
    code = ("import uvicorn; uvicorn.run('callvet.api.app:create_app', factory=True, host='127.0.0.1', "
            f"port={port}, log_level='warning', ws='websockets-sansio')")
    return subprocess.Popen([sys.executable, "-c", code], env=full)


def _serve(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    proc = _spawn(tmp, port, **env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("server did not start")


def _case(c: httpx.Client, h: dict[str, str], case_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/cases/{case_id}", headers=h)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _wait(c: httpx.Client, h: dict[str, str], case_id: str, status: str,
          timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = _case(c, h, case_id)
        if got["status"] == status or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_sigkill_between_call_end_and_decision_loses_and_doubles_nothing(tmp_path: Path) -> None:
    from decision_fixtures import example

    db = Database(f"sqlite:///{tmp_path / 'cv.db'}")
    db.create_schema()
    robot = {"Authorization": f"Bearer {auth.create_key(db, 'robot', 'r1')}"}
    analyst = {"Authorization": f"Bearer {auth.create_key(db, 'analyst', 'a1')}"}
    port = _port()
    base = f"http://127.0.0.1:{port}"
    window = {"timezone": "UTC", "start_hour": 0, "end_hour": 24}

    a = _serve(tmp_path, port, CALLVET_CASES_PUMP="0")
    ids = []
    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            for n in range(2):
                app = example(application_id=f"crash-{n}", risk_reasons=["new_device", "address_mismatch"])
                r = c.post("/v1/applications", json={"application": app, "call_window": window},
                           headers=robot)
                assert r.status_code == 201 and r.json()["status"] == "awaiting_call", r.text
                ids.append(r.json()["case_id"])
            for _ in ids:
                claim = c.post("/v1/robot/calls:claim", headers=robot).json()
                asyncio.run(place_call(claim, "en-us+m1", lambda q: {}, max_questions=0, extra_speech=SPEECH))
            for cid in ids:
                got = _wait(c, analyst, cid, "deciding")
                assert got["status"] == "deciding", got
                ended = [e for e in got["timeline"] if e["kind"] == "call_ended"]
                assert len(ended) == 1 and ended[0]["delivered_at"] is None
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()

    b = _spawn(tmp_path, port, CALLVET_CASES_FAILPOINT="after_deliver")
    assert b.wait(timeout=60) == -signal.SIGKILL  # died right after handing the first result on

    with db.connect() as conn:
        from callvet.cases.tables import case_events

        pending = conn.execute(select(func.count()).select_from(case_events).where(
            case_events.c.kind == "call_ended", case_events.c.delivered_at.is_(None))).scalar_one()
    assert pending == 2  # delivered to one workflow, but not yet marked

    c_proc = _serve(tmp_path, port)
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            for cid in ids:
                got = _wait(c, analyst, cid, "review")
                assert got["status"] == "review", got
                kinds = [e["kind"] for e in got["timeline"]]
                assert kinds.count("call_ended") == 1 and kinds.count("decided") == 1, kinds
                assert all(e["delivered_at"] for e in got["timeline"] if e["kind"] == "call_ended")
                wf = c.get(f"/v1/workflow/instances/{got['instance_id']}", headers=analyst).json()
                assert [e["kind"] for e in wf["events"]].count("message.received") == 1
                assert len([t for t in wf["tasks"] if t["status"] == "open"]) == 1
                assert got["decision"]["final"] == "refer_human"
    finally:
        c_proc.terminate()
        c_proc.wait(timeout=30)
    from callvet.decision.tables import decision_records

    with db.connect() as conn:
        for n in range(2):
            finals = conn.execute(select(func.count()).select_from(decision_records).where(
                decision_records.c.application_id == f"crash-{n}",
                decision_records.c.investigation.is_not(None))).scalar_one()
            assert finals == 1
    db.dispose()
