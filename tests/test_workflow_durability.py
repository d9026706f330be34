"""SIGKILL a real worker process mid-run, restart it, and prove nothing was lost or done twice.

The worker (``callvet workflow worker``) runs in a subprocess against the test database (a SQLite
file, and PostgreSQL when configured); the test kills it
with SIGKILL at random moments while it advances instances, restarts it, and meanwhile delivers
investigation results and completes human tasks from this process (so the two also race on the
optimistic lock). The decisions come from the scripted policy so outcomes are known in advance.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from callvet.core.db import Database
from callvet.core.errors import Conflict
from callvet.sim.workflow import application, scripted_decider
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.tables import wf_effects, wf_events, wf_instances, wf_issuances
from sqlalchemy import func, select, text

N = 120


def _worker(db_url: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CALLVET_DATABASE_URL": db_url, "CALLVET_DATA_DIR": str(tmp / "var")}
    with (tmp / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callvet",
                "workflow",
                "worker",
                "--interval",
                "0.05",
                "--decider",
                "callvet.sim.workflow:scripted_decider",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _statuses(db: Database) -> Counter[str]:
    with db.connect() as conn:
        return Counter(
            dict(
                conn.execute(
                    select(wf_instances.c.status, func.count()).group_by(wf_instances.c.status)
                ).all()
            )
        )


def _wait_started(db: Database, baseline: int, timeout: float = 60) -> None:
    """Until the worker has committed something (imports on a busy machine take a while)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with db.connect() as conn:
            if (conn.execute(select(func.count()).select_from(wf_effects)).scalar() or 0) > baseline:
                return
        time.sleep(0.05)


def _url_for_subprocess(db: Database) -> str:
    """The test database's URL; on PostgreSQL with the per-test schema as the search path."""
    if db.dialect != "postgresql":
        return db.url
    with db.connect() as conn:
        schema = conn.execute(text("SHOW search_path")).scalar()
    return f"{db.url}{'&' if '?' in db.url else '?'}options=-csearch_path%3D{schema}"


def test_sigkill_loses_and_duplicates_nothing(db: Database, tmp_path: Path) -> None:
    url = _url_for_subprocess(db)
    rt = WorkflowRuntime(db, decide=scripted_decider)
    rt.ensure_ready()
    rt.board.upsert_user("alice", role="approver", skills=["card"], actor="t")
    rng = random.Random(7)
    for i in range(N):
        # a mix: auto approvals, declines, investigations (messages) and human reviews
        app = application(
            i, delinquencies=4 if i % 7 == 0 else 0, flagged=i % 3 == 0, income=0 if i % 5 == 0 else None
        )
        rt.start(
            "card_issuance",
            {"application": app},
            actor="analyst:t",
            run=False,
            instance_id=f"00000000-0000-0000-0000-{i:012d}",
        )
    kills_mid_run = 0
    for _ in range(4):
        proc = _worker(url, tmp_path)
        with db.connect() as conn:
            before = conn.execute(select(func.count()).select_from(wf_effects)).scalar() or 0
        _wait_started(db, before)
        time.sleep(rng.uniform(0.05, 0.4))
        running = _statuses(db)["running"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills_mid_run += running > 0
    assert kills_mid_run >= 2, "the kills must land while instances were still being advanced"

    proc = _worker(url, tmp_path)
    try:
        deadline = time.monotonic() + 120
        killed_again = False
        while time.monotonic() < deadline:
            st = _statuses(db)
            if st["running"] == 0 and st["waiting"] == 0:
                break
            with db.connect() as conn:
                waiting = [
                    r.id
                    for r in conn.execute(
                        select(wf_instances.c.id).where(wf_instances.c.status == "waiting")
                    ).all()
                ]
            for iid in waiting:
                with contextlib.suppress(Conflict):
                    rt.deliver_message(
                        iid,
                        "investigation_result",
                        {"investigation": {"investigator": "robot-1", "questionnaire": {"verdict": "pass"}}},
                        actor="robot",
                    )
            for task in rt.board.list_open(role="approver", limit=1000):
                with contextlib.suppress(Conflict):
                    rt.complete_task(
                        task["task_id"],
                        {"review_decision": "approve", "approved_amount": 10000},
                        actor="approver:alice",
                        role="approver",
                        reviewer_id="alice",
                    )
            if not killed_again and st["completed"] > N // 2:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                proc = _worker(url, tmp_path)
                killed_again = True
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert _statuses(db) == Counter({"completed": N})

    with db.connect() as conn:
        outcomes = Counter(r.kind for r in conn.execute(select(wf_issuances.c.kind)).all())
        per_instance = Counter(r.instance_id for r in conn.execute(select(wf_issuances.c.instance_id)).all())
        events = conn.execute(select(wf_events.c.instance_id, wf_events.c.kind, wf_events.c.details)).all()
        effects = conn.execute(select(wf_effects.c.effect_key, wf_effects.c.instance_id)).all()
    assert max(per_instance.values()) == 1, "a card was issued twice"
    issued = [
        r for r in events if r.kind == "service.completed" and r.details["handler"] == "issuance.issue_card"
    ]
    assert len(issued) == outcomes["card_issued"] == len(per_instance)
    started = Counter(r.instance_id for r in events if r.kind == "instance.started")
    completed = Counter(r.instance_id for r in events if r.kind == "instance.completed")
    assert set(started.values()) == {1} and set(completed.values()) == {1} and len(completed) == N
    fresh = Counter(r.details["effect_key"] for r in events if r.kind == "service.completed")
    # each service-task execution committed once, with exactly one stored effect (a replay after a
    # crash reuses the stored result and is the one committed event)
    assert set(fresh.values()) == {1}, "a service task's completion was recorded twice"
    assert set(fresh) == {e.effect_key for e in effects}
    for r in rt.board.list_open(role=None, limit=1000):
        raise AssertionError(f"open task left: {r}")
