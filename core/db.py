"""One database handle for every part: SQLite by default, PostgreSQL when configured.

Parts declare their tables on the shared :data:`metadata` in their own ``tables`` module and list that
module in :data:`TABLE_MODULES`, so ``create_schema`` builds everything without this module importing the
parts' logic. SQLite runs in WAL mode with foreign keys on, which is what concurrent API workers need.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Connection,
    Engine,
    MetaData,
    Table,
    TypeDecorator,
    create_engine,
    event,
    exc,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "QUEUE_AUTOVACUUM", "TABLE_MODULES", "Database", "JSONText", "eager_autovacuum", "metadata", "utcnow",
]

metadata = MetaData()

TABLE_MODULES = [
    "callvet.core.tables",
    "callvet.voice.tables",
    "callvet.voice.call.tables",
    "callvet.questionnaire.tables",
    "callvet.decision.tables",
    "callvet.workflow.tables",
    "callvet.portrait.tables",
    "callvet.cases.tables",
    "callvet.console.tables",
]


#: Storage parameters for queue-like tables (a pending flag cleared by UPDATE and an index on it): vacuum
#: after 1 % of the rows changed instead of PostgreSQL's 20 %. Until vacuum, every cleared row leaves a dead
#: index entry that the pending query still visits: after the 100k-day bench the call-result pump's query
#: took 8.3 ms with nothing pending, 0.08 ms after a VACUUM (bench/workflow/RESULTS.md).
QUEUE_AUTOVACUUM = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02"


def eager_autovacuum(table: Table) -> None:
    """Give ``table`` :data:`QUEUE_AUTOVACUUM` when ``create_all`` makes it on PostgreSQL (a migration
    sets it for databases made before)."""
    event.listen(table, "after_create",
                 DDL(f"ALTER TABLE {table.name} SET ({QUEUE_AUTOVACUUM})").execute_if(dialect="postgresql"))


def utcnow() -> datetime:
    return datetime.now(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON that stores the same text on SQLite and PostgreSQL (no JSONB reordering of keys)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value


def _load_table_modules() -> None:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


class Database:
    """Engine plus transactional helpers; ``url`` is any SQLAlchemy URL (sqlite or postgresql+psycopg)."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            if schema:
                kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            _ping_when_idle(self.engine, PING_IDLE_S)

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (an empty database is created and stamped; see
        :mod:`callvet.core.migrations`)."""
        from callvet.core.migrations import upgrade

        upgrade(self)

    def drop_schema(self) -> None:
        _load_table_modules()
        metadata.drop_all(self.engine)
        with self.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed on success, rolled back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


PING_IDLE_S = 1.0
"""A pooled connection idle longer than this is pinged before it is handed out."""


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Pessimistic disconnect handling that costs nothing on a busy pool.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip and an autocommit toggle per
    unit of work, measured at ~8 % of a case's time on the 100k-day bench. A connection that went back to
    the pool a moment ago is as good as the statement it just ran, so only connections idle longer than
    ``idle_s`` are pinged (a dead one is discarded and the pool retries with a fresh one). A server that
    drops connections that were in use a moment ago fails that statement, and SQLAlchemy then invalidates
    the whole pool, so the next checkout connects afresh."""
    dialect = engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            raise exc.DisconnectionError(f"idle connection failed its ping: {err}") from err

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
