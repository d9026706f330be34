"""core.bulkinsert: the driver-level multi-row insert stores what SQLAlchemy's insert stores, raises the
same errors, and falls back to SQLAlchemy where it cannot bind exactly as SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from callvet.core.bulkinsert import BulkInsert, pipelined
from callvet.core.db import Database, JSONText
from callvet.decision.tables import SerializedJSON
from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

_meta = MetaData()
_probe = Table("bulk_probe", _meta,
               Column("id", Integer, primary_key=True, autoincrement=True),
               Column("key", String(32), nullable=False, unique=True),
               Column("score", Float, nullable=True),
               Column("doc", JSONText, nullable=True),
               Column("text_doc", SerializedJSON, nullable=True),
               Column("at", DateTime(timezone=True), nullable=False),
               Column("note", String(20), nullable=False, default="none"))


def _rows(prefix: str) -> list[dict[str, Any]]:
    at = datetime(2026, 12, 3, 18, 0, 1, 123456, tzinfo=UTC)
    return [{"key": f"{prefix}-{i}", "score": 0.1 * i if i else None, "doc": {"a": [1, 2.5, "é"], "i": i},
             "text_doc": '{"pre":"serialized"}' if i % 2 else {"b": None}, "at": at, "note": "n"}
            for i in range(4)]


def _read(db: Database, prefix: str) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return [tuple(r[1:]) for r in conn.execute(select(_probe).where(_probe.c.key.like(f"{prefix}-%"))
                                                  .order_by(_probe.c.key))]


def test_stores_what_sqlalchemy_stores(db: Database) -> None:
    _meta.create_all(db.engine)
    bulk = BulkInsert(_probe)
    with db.begin() as conn, pipelined(conn):
        bulk.run(conn, _rows("fast"))
        bulk.run(conn, [])
    with db.begin() as conn:
        conn.execute(insert(_probe), _rows("sa"))
    fast, sa = _read(db, "fast"), _read(db, "sa")
    assert len(fast) == 4
    assert [r[1:] for r in fast] == [r[1:] for r in sa]
    direct = [v for v in bulk._compiled.values() if v is not None]
    assert bool(direct) == (db.dialect == "postgresql")  # the driver path is taken on PostgreSQL


def test_a_duplicate_is_sqlalchemys_integrity_error_and_rolls_back(db: Database) -> None:
    _meta.create_all(db.engine)
    bulk = BulkInsert(_probe)
    with db.begin() as conn:
        bulk.run(conn, _rows("dup")[:1])
    with pytest.raises(IntegrityError), db.begin() as conn, pipelined(conn):
        bulk.run(conn, _rows("other")[:2])
        bulk.run(conn, _rows("dup")[:1])
    assert _read(db, "other") == []  # the whole transaction rolled back
    with db.begin() as conn:  # the connection is usable again
        bulk.run(conn, _rows("after")[:1])
    assert len(_read(db, "after")) == 1


def test_rows_that_need_a_column_default_take_the_ordinary_path(db: Database) -> None:
    _meta.create_all(db.engine)
    bulk = BulkInsert(_probe)
    rows = [{k: v for k, v in r.items() if k != "note"} for r in _rows("dflt")]
    with db.begin() as conn:
        bulk.run(conn, rows)
    assert [r[-1] for r in _read(db, "dflt")] == ["none"] * 4
    assert all(v is None for v in bulk._compiled.values())
