"""Schema migrations (Alembic), run by ``callvet db upgrade`` and at the start of ``callvet serve``.

Three kinds of database meet :func:`upgrade`:

- empty: the tables are made from the current definitions (``create_all``, what the revisions add up
  to; ``tests/test_core_migrations.py`` checks they agree) and stamped at head: fast, so every test
  database can go through here;
- made by ``create_all`` of a release without migrations (no ``alembic_version``): *adopted*, stamped at
  the revision its schema matches (``0001_baseline`` while the decision record's columns are still JSON,
  else ``0002``), then upgraded; table-adding revisions create a table only when it is missing;
- versioned: upgraded to head.

Concurrent starts (several uvicorn workers) are serialised by a lock: ``pg_advisory_lock`` on
PostgreSQL, an exclusive file lock beside the SQLite file. A table defined in code but added by no
revision (a new table without its migration) is still created, with a warning, so the service runs;
the test fails until the revision is written (``docs/migrations.md``).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from callvet.core.db import Database, _load_table_modules, metadata
from callvet.core.errors import Conflict
from sqlalchemy import Connection, inspect, text

__all__ = ["BASELINE", "HERE", "adopt_revision", "current", "head", "upgrade"]

log = logging.getLogger("callvet.migrations")

HERE = Path(__file__).resolve().parent
BASELINE = "0001_baseline"
_BASELINE_TABLES = frozenset({
    "api_keys", "audit_log", "blacklist_identities", "blacklist_samples", "blacklist_state", "calls",
    "call_events", "questionnaire_interviews", "questionnaire_answers", "decision_policy_versions",
    "decision_records", "wf_definitions", "wf_instances", "wf_events", "wf_tasks", "wf_effects",
    "wf_issuances", "wf_users", "wf_config", "wf_checks", "wf_findings",
})
_PG_LOCK_KEY = 0x63616C6C  # "call"


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    heads = _script().get_heads()
    if len(heads) != 1:
        raise Conflict(f"migrations have {len(heads)} heads {heads}; merge them", code="migration_heads")
    return heads[0]


def current(db: Database) -> str | None:
    with db.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def adopt_revision(conn: Connection) -> str:
    """The revision an unversioned database made by ``create_all`` matches."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    missing = sorted(_BASELINE_TABLES - tables)
    if missing:
        raise Conflict(
            f"the database has tables but no migration history, and lacks {', '.join(missing)}: it was "
            "not made by a callvet release; restore a backup or start from an empty database",
            code="unknown_schema",
        )
    reasons = next(c for c in insp.get_columns("decision_records") if c["name"] == "reasons")
    is_json = "JSON" in str(reasons["type"]).upper()
    return BASELINE if is_json else "0002_decision_json_as_text"


@contextmanager
def _lock(db: Database) -> Iterator[None]:
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
        return
    path = db.engine.url.database
    if db.dialect != "sqlite" or not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(db: Database, revision: str = "heads") -> str | None:
    """Bring ``db`` to ``revision`` (default head); returns the revision it is at afterwards."""
    _load_table_modules()
    target = head() if revision == "heads" else revision
    with _lock(db):
        with db.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        if rev is None and not tables and revision == "heads":
            metadata.create_all(db.engine)
            with db.begin() as conn:
                command.stamp(config(conn), target)
            log.info("database %s created at %s", db.engine.url.render_as_string(), target)
            return target
        with db.begin() as conn:
            if rev is None and tables:
                rev = adopt_revision(conn)
                command.stamp(config(conn), rev)
                log.warning("unversioned database adopted at migration %s", rev)
            if rev != target:
                command.upgrade(config(conn), target)
                log.info("database migrated %s -> %s", rev, target)
        if revision == "heads":
            _create_uncovered(db)
    return current(db)


def _create_uncovered(db: Database) -> None:
    with db.connect() as conn:
        present = set(inspect(conn).get_table_names())
    absent = [t for name, t in metadata.tables.items() if name not in present]
    if absent:
        log.warning("tables without a migration revision, created from their definitions: %s; "
                    "write a revision (docs/migrations.md)", ", ".join(t.name for t in absent))
        metadata.create_all(db.engine, tables=absent)
