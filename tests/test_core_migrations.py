"""Schema migrations: a database made by the previous release's ``create_all`` (checked-in DDL of
commit a4ca1a1, the release before 74965f2) is adopted and upgraded with its rows, on SQLite and
PostgreSQL; the revisions add up to the table definitions; ``callvet db upgrade`` and app start run them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from callvet.core.db import Database, metadata
from callvet.core.errors import Conflict
from callvet.core.migrations import BASELINE, current, head, upgrade
from callvet.decision.tables import decision_records
from sqlalchemy import create_engine, inspect, select, text

DATA = Path(__file__).parent / "data"
PG_URL = os.environ.get("CALLVET_TEST_DATABASE_URL")
ROW = {"decision_id": "d1", "application_id": "app-1", "decision": "refer", "credit_limit": 5000.0,
       "score": 0.42, "reasons": '["thin_file", "address_mismatch"]', "policy_versions": '{"card": 3}',
       "model_version": "credit-1", "application": '{"name": "Li Wei", "income": 1e5}',
       "investigation": None, "details": "100000", "actor": "analyst:1",
       "created_at": "2026-11-20 10:00:00"}


def _statements(dialect: str) -> list[str]:
    sql = (DATA / f"schema_release0_{dialect}.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _insert_row(conn: object) -> None:
    cols = ", ".join(ROW)
    conn.execute(text(f"INSERT INTO decision_records ({cols}) VALUES ({', '.join(':' + c for c in ROW)})"),  # type: ignore[attr-defined]
                 ROW)


@pytest.fixture(params=["sqlite"] + (["postgres"] if PG_URL else []))
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database exactly as the previous release's ``create_all`` left it, with one decision."""
    if request.param == "sqlite":
        path = tmp_path / "old.db"
        con = sqlite3.connect(path)
        for stmt in _statements("sqlite"):
            con.execute(stmt)
        con.commit()
        con.close()
        db = Database(f"sqlite:///{path}")
        with db.begin() as conn:
            _insert_row(conn)
        yield db
        db.dispose()
        return
    assert PG_URL
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(PG_URL, schema=schema)
    with db.begin() as conn:
        for stmt in _statements("postgresql"):
            conn.execute(text(stmt))
        _insert_row(conn)
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _column_types(db: Database, table: str) -> dict[str, str]:
    with db.connect() as conn:
        return {c["name"]: str(c["type"]).upper() for c in inspect(conn).get_columns(table)}


def test_previous_release_database_is_adopted_and_upgraded(old_db: Database) -> None:
    assert current(old_db) is None
    assert "JSON" in _column_types(old_db, "decision_records")["reasons"]
    assert upgrade(old_db) == head()
    types = _column_types(old_db, "decision_records")
    for col in ("reasons", "policy_versions", "application", "investigation", "details"):
        assert types[col] == "TEXT", (col, types[col])
    with old_db.connect() as conn:
        present = set(inspect(conn).get_table_names())
        row = conn.execute(select(decision_records).where(decision_records.c.decision_id == "d1")).one()
    assert set(metadata.tables) <= present and "outbox" in present
    assert row.reasons == ["thin_file", "address_mismatch"] and row.policy_versions == {"card": 3}
    assert row.application == {"name": "Li Wei", "income": 100000.0}
    assert row.details == 100000 and row.investigation is None
    with old_db.begin() as conn:  # the new code writes pre-serialized text into the migrated column
        conn.execute(decision_records.update().values(reasons=json.dumps(["ok"])))
    with old_db.connect() as conn:
        assert conn.execute(select(decision_records.c.reasons)).scalar_one() == ["ok"]
    assert upgrade(old_db) == head()  # idempotent


def test_migrations_add_up_to_the_table_definitions(db: Database) -> None:
    """Every table in code comes from a revision: a new table needs its revision (docs/migrations.md)."""
    db.drop_schema()
    upgrade(db, head())  # revisions only: no create_all fast path, no fallback for uncovered tables
    with db.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    structural = [d for d in diffs if isinstance(d, tuple) and d[0] in (
        "add_table", "remove_table", "add_column", "remove_column")]
    assert structural == [], "tables/columns without a migration revision: " + ", ".join(
        f"{d[0]} {getattr(d[-1], 'name', d[-1])}" for d in structural)


def test_an_unknown_unversioned_schema_is_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE api_keys (id INTEGER PRIMARY KEY)"))
    with pytest.raises(Conflict) as exc:
        upgrade(db)
    assert exc.value.code == "unknown_schema" and "wf_instances" in exc.value.message
    assert current(db) is None


def test_cli_db_upgrade_and_app_start_migrate(tmp_path: Path) -> None:
    path = tmp_path / "var" / "callvet.db"
    path.parent.mkdir()
    con = sqlite3.connect(path)
    for stmt in _statements("sqlite"):
        con.execute(stmt)
    con.commit()
    con.close()
    env = {**os.environ, "CALLVET_DATA_DIR": str(tmp_path / "var")}
    env.pop("CALLVET_DATABASE_URL", None)
    run = subprocess.run([sys.executable, "-m", "callvet", "db", "current"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "current: unversioned" in run.stdout, run.stderr
    run = subprocess.run([sys.executable, "-m", "callvet", "db", "upgrade"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"database at {head()} (was unversioned)" in run.stdout
    db = Database(f"sqlite:///{path}")
    assert current(db) == head()
    db.dispose()

    other = tmp_path / "app.db"  # create_app (what `callvet serve` runs) migrates an old database
    con = sqlite3.connect(other)
    for stmt in _statements("sqlite"):
        con.execute(stmt)
    con.commit()
    con.close()
    from callvet.api.app import create_app
    from callvet.core.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{other}"))
    assert current(app.state.ctx.db) == head()
    app.state.ctx.close()
    assert head() > BASELINE
