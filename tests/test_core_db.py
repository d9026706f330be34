"""core.db: pooled PostgreSQL connections are pinged only after they sat idle, and a connection the server
dropped while idle is replaced without the caller seeing an error."""

from __future__ import annotations

import time
from typing import Any

import pytest
from callvet.core import db as dbmod
from callvet.core.db import Database
from conftest import PG_URL
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs CALLVET_TEST_DATABASE_URL (PostgreSQL)")


def _counting_pings(db: Database) -> list[int]:
    pings: list[int] = []
    real = db.engine.dialect.do_ping

    def ping(dbapi_conn: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_conn))

    db.engine.dialect.do_ping = ping  # type: ignore[method-assign]
    return pings


def _pid(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_busy_pool_is_not_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PG_URL
    monkeypatch.setattr(dbmod, "PING_IDLE_S", 60.0)
    db = Database(PG_URL)
    try:
        pings = _counting_pings(db)
        pids = {_pid(db) for _ in range(5)}
        assert len(pids) == 1, "one pooled connection serves consecutive units of work"
        assert pings == []
    finally:
        db.dispose()


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PG_URL
    monkeypatch.setattr(dbmod, "PING_IDLE_S", 0.05)
    db = Database(PG_URL)
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        pings = _counting_pings(db)
        first = _pid(db)
        time.sleep(0.1)
        assert _pid(db) == first and len(pings) == 1, "idle past the limit: pinged, alive, kept"
        with admin.connect() as c:
            assert c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first}).scalar_one()
        time.sleep(0.1)
        second = _pid(db)
        assert second != first, "the dropped connection was discarded and a fresh one used"
        assert len(pings) == 2
    finally:
        admin.dispose()
        db.dispose()


def _reloptions(db: Database, table: str) -> set[str]:
    with db.connect() as conn:
        opts = conn.execute(text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:t)"),
                            {"t": table}).scalar_one()
    return set(opts or [])


QUEUES = ("outbox", "case_events", "call_queue")
EAGER = {"autovacuum_vacuum_scale_factor=0.01", "autovacuum_analyze_scale_factor=0.02"}


def test_queue_tables_are_vacuumed_eagerly_when_created_and_when_migrated(db: Database) -> None:
    from callvet.core.migrations import head, upgrade

    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    for table in QUEUES:
        assert _reloptions(db, table) == EAGER, table
    assert _reloptions(db, "cases") == set()
    db.drop_schema()
    upgrade(db, head())  # revisions only, as a database made before them is brought up to date
    for table in QUEUES:
        assert _reloptions(db, table) == EAGER, table
