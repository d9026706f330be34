"""The robots' call queue on SQLite and PostgreSQL: concurrent claims, calling hours, back-off, leases
and one-time stream tokens."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callvet.cases import dispatch
from callvet.cases.dispatch import CallWindow
from callvet.cases.tables import call_queue
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput
from sqlalchemy import select

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
ALWAYS = CallWindow("UTC", 0, 24)


def _enqueue(db: Database, case_id: str, *, risk: float = 0.5, window: CallWindow = ALWAYS,
             now: datetime = NOW, hours: float = 48, max_attempts: int = 5) -> str:
    with db.begin() as conn:
        return dispatch.enqueue(conn, case_id, risk=risk, amount=20000, window=window,
                                deadline=now + timedelta(hours=hours), mobile="+86 139 0000 0000", now=now,
                                max_attempts=max_attempts)


def _race(db: Database, robots: int, now: datetime) -> list[dict[str, Any]]:
    barrier = threading.Barrier(robots)
    got: list[dict[str, Any]] = []
    lock = threading.Lock()

    def robot(k: int) -> None:
        barrier.wait()
        while True:
            c = dispatch.claim(db, f"robot:{k}", now=now)
            if c is None:
                return
            with lock:
                got.append(c)

    threads = [threading.Thread(target=robot, args=(k,)) for k in range(robots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return got


def test_robots_claiming_at_once_never_get_the_same_call(db: Database) -> None:
    for n in range(40):
        _enqueue(db, f"case-{n}", risk=(n % 7) / 7)
    got = _race(db, 8, NOW)
    assert sorted(str(c["case_id"]) for c in got) == sorted(f"case-{n}" for n in range(40))
    assert len({c["token"] for c in got}) == 40
    for _ in range(5):  # one call, many robots: exactly one wins
        _enqueue(db, f"solo-{_}")
        won = _race(db, 6, NOW)
        assert len(won) == 1 and won[0]["case_id"] == f"solo-{_}"
    with db.connect() as conn:
        rows = conn.execute(select(call_queue)).all()
    assert all(r.status == "leased" and r.lease_version == 1 for r in rows)


def test_priority_orders_by_risk_then_deadline(db: Database) -> None:
    _enqueue(db, "low", risk=0.1)
    _enqueue(db, "high", risk=0.9)
    _enqueue(db, "mid-late", risk=0.5, hours=48)
    _enqueue(db, "mid-soon", risk=0.5, hours=2)
    order = [dispatch.claim(db, "r", now=NOW)["case_id"] for _ in range(4)]
    assert order == ["high", "mid-soon", "mid-late", "low"]
    assert dispatch.claim(db, "r", now=NOW) is None


def test_quiet_hours_and_back_off(db: Database) -> None:
    shanghai = CallWindow("Asia/Shanghai", 9, 21)
    night = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    _enqueue(db, "c1", window=shanghai, now=night, max_attempts=3)
    assert dispatch.claim(db, "r", now=night) is None
    assert dispatch.claim(db, "r", now=night + timedelta(hours=9, minutes=59)) is None  # 08:59 local
    morning = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 09:00 local
    c = dispatch.claim(db, "r", now=morning)
    assert c is not None and c["attempt"] == 1
    with db.begin() as conn:
        out = dispatch.report_outcome(conn, str(c["call_request_id"]), "no_answer",
                                      lease_version=int(c["lease_version"]), robot="r", now=morning)
    assert out["status"] == "queued"
    assert out["next_attempt_at"] == (morning + timedelta(minutes=30)).isoformat()
    with db.begin() as conn, pytest.raises(Conflict):
        dispatch.report_outcome(conn, str(c["call_request_id"]), "busy",
                                lease_version=int(c["lease_version"]), robot="r", now=morning)
    assert dispatch.claim(db, "r", now=morning + timedelta(minutes=29)) is None
    c2 = dispatch.claim(db, "r", now=morning + timedelta(minutes=31))
    assert c2 is not None and c2["attempt"] == 2
    # Back-off that lands in quiet hours moves to the next morning.
    evening = datetime(2026, 12, 3, 12, 50, tzinfo=UTC)  # 20:50 local; 2nd no-answer waits 60 min
    with db.begin() as conn:
        out = dispatch.report_outcome(conn, str(c2["call_request_id"]), "no_answer",
                                      lease_version=int(c2["lease_version"]), robot="r", now=evening)
    assert out["next_attempt_at"] == datetime(2026, 12, 4, 1, 0, tzinfo=UTC).isoformat()
    c3 = dispatch.claim(db, "r", now=datetime(2026, 12, 4, 1, 5, tzinfo=UTC))
    assert c3 is not None
    with db.begin() as conn:
        out = dispatch.report_outcome(conn, str(c3["call_request_id"]), "busy",
                                      lease_version=int(c3["lease_version"]), robot="r",
                                      now=datetime(2026, 12, 4, 1, 6, tzinfo=UTC))
    assert out["status"] == "exhausted" and out["attempts"] == 3
    with db.begin() as conn, pytest.raises(InvalidInput):
        dispatch.report_outcome(conn, "x", "hung_up_angrily", lease_version=0, robot="r")
    with pytest.raises(InvalidInput):
        CallWindow("Mars/Olympus", 9, 21)


def test_expired_lease_is_reclaimed_and_the_stale_robot_refused(db: Database) -> None:
    _enqueue(db, "c1")
    first = dispatch.claim(db, "r1", now=NOW)
    assert first is not None
    assert dispatch.claim(db, "r2", now=NOW + timedelta(seconds=60)) is None
    second = dispatch.claim(db, "r2", now=NOW + timedelta(seconds=dispatch.LEASE_S + 1))
    assert second is not None and second["lease_version"] == int(first["lease_version"]) + 1
    with db.begin() as conn, pytest.raises(Conflict):
        dispatch.report_outcome(conn, str(first["call_request_id"]), "busy",
                                lease_version=int(first["lease_version"]), robot="r1")
    with db.begin() as conn:  # the first robot's token died with its lease
        assert dispatch.admit(conn, "c1", str(first["token"]), "call-a", now=NOW) is None


def test_stream_token_opens_one_stream_only(db: Database) -> None:
    _enqueue(db, "c1")
    _enqueue(db, "c2")
    a = dispatch.claim(db, "r", now=NOW)
    b = dispatch.claim(db, "r", now=NOW)
    assert a is not None and b is not None
    with db.begin() as conn:
        assert dispatch.admit(conn, str(a["case_id"]), "forged", "call-1", now=NOW) is None
        assert dispatch.admit(conn, str(a["case_id"]), str(b["token"]), "call-1", now=NOW) is None
        assert dispatch.admit(conn, str(a["case_id"]), str(a["token"]), "call-1", now=NOW) is not None
        assert dispatch.admit(conn, str(a["case_id"]), str(a["token"]), "call-2", now=NOW) is None
        late = NOW + timedelta(seconds=dispatch.TOKEN_TTL_S + 1)
        assert dispatch.admit(conn, str(b["case_id"]), str(b["token"]), "call-3", now=late) is None
        stored = conn.execute(select(call_queue.c.token_hash)
                              .where(call_queue.c.case_id == a["case_id"])).scalar()
    assert stored == dispatch.hash_token(str(a["token"])) and str(a["token"]) not in str(stored)
