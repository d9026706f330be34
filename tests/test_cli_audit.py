"""``callvet audit`` on a real database: filters by actor, action, target and time, bounded and paged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callvet._cli.audit import parse_since
from callvet.cli import app
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.settings import get_settings
from callvet.core.tables import audit_log
from sqlalchemy import update
from typer.testing import CliRunner


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A data dir whose audit log has 30 rows from two actors, the oldest ten dated ten days back."""
    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    s = get_settings()
    s.ensure_dirs()
    db = Database(s.database_url)
    db.create_schema()
    with db.begin() as conn:
        for i in range(30):
            actor = "cli:alice" if i % 2 else "approver:user:bob"
            action = "blacklist.identity.create" if i < 20 else "console.user.disable"
            audit.record(conn, actor, action, "blacklist_identity" if i < 20 else "console_user", i,
                         reason=f"r{i}", details={"i": i})
        conn.execute(update(audit_log).where(audit_log.c.id <= 10)
                     .values(at=datetime.now(UTC) - timedelta(days=10)))
    yield db
    db.dispose()
    get_settings.cache_clear()


def _ids(*args: str) -> list[int]:
    r = CliRunner().invoke(app, ["audit", "--json", *args])
    assert r.exit_code == 0, r.output
    return [json.loads(line)["id"] for line in r.stdout.splitlines()]


def test_filters(logged: Database) -> None:
    assert _ids("--limit", "1000") == list(range(30, 0, -1))
    assert _ids("--limit", "1000", "--actor", "cli:alice") == list(range(30, 0, -2))
    assert _ids("--limit", "1000", "--actor", "approver:*") == list(range(29, 0, -2))
    assert _ids("--limit", "1000", "--action", "console.*") == list(range(30, 20, -1))
    assert _ids("--target", "blacklist_identity:7") == [8]
    assert _ids("--limit", "1000", "--since", "7d") == list(range(30, 10, -1))
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert _ids("--limit", "1000", "--since", day, "--actor", "cli:*", "--action", "console.user.disable") \
        == list(range(30, 20, -2))
    assert _ids("--actor", "cli:al%") == []  # a LIKE wildcard is a plain character


def test_paging_is_bounded_and_stable(logged: Database) -> None:
    r = CliRunner().invoke(app, ["audit", "--limit", "12"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 12
    assert "more: --before-id 19" in r.stderr
    first = r.stdout.splitlines()[0].split("\t")
    assert first[0] == "30" and first[2] == "cli:alice" and first[4] == "console_user:29"
    assert json.loads(first[-1]) == {"i": 29}
    assert _ids("--limit", "12", "--before-id", "19") == list(range(18, 6, -1))
    assert _ids("--limit", "12", "--before-id", "7") == list(range(6, 0, -1))
    for bad in (["--limit", "0"], ["--limit", "1001"], ["--since", "yesterday"]):
        r = CliRunner().invoke(app, ["audit", *bad])
        assert r.exit_code == 2 and "error [" in r.stderr


def test_parse_since() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-12-01T08:00", now) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T08:00+08:00", now).utcoffset() == timedelta(hours=8)
