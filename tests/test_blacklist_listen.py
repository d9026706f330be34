"""Index sync by LISTEN/NOTIFY (issue 17), on PostgreSQL: two blacklists on one database, each with its
own engine connection pool (as two replicas). A print added on one is found by the other's search within
a bounded wait with no generation query on the searching side; when the listening backend is killed
(``pg_terminate_backend``) the searching side falls back to the per-search query (a change is seen at
once, and /readyz's check says ``per_search``), and once the listener is back the queries stop again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callvet.core.db import Database
from callvet.core.settings import Settings
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine
from serverproc import wait_for
from speech import espeak, to_wav_bytes
from sqlalchemy import create_engine, event, text

PG_URL = os.environ.get("CALLVET_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not PG_URL,
                                reason="LISTEN/NOTIFY is PostgreSQL's: set CALLVET_TEST_DATABASE_URL")

TEXT = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
        "every month and I travel a lot for work.")


class GenerationQueries:
    """Counts the statements on ``db``'s engine that read the blacklist generation."""

    def __init__(self, db: Database) -> None:
        self.n = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if "blacklist_state" in statement and "generation" in statement:
            self.n += 1


@pytest.fixture
def pg_db(tmp_path: Path) -> Iterator[Database]:
    import uuid

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(PG_URL or "", schema=schema)
    db.create_schema()
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_a_print_added_on_one_replica_is_found_on_the_other_without_a_query_per_search(
        pg_db: Database, tmp_path: Path) -> None:
    engine = VoiceEngine.from_settings(Settings())
    with pg_db.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
    other_db = Database(PG_URL or "", schema=schema)
    a = Blacklist(pg_db, engine, tmp_path / "a")
    b = Blacklist(other_db, engine, tmp_path / "b")
    try:
        assert a.listener is not None and b.listener is not None
        assert b.listener.wait_healthy(10), "the listener never connected"
        probe = engine.voiceprint(engine.analyse(engine.decode(to_wav_bytes(espeak(TEXT, "en-us+m3"),
                                                                            16000))).speech)
        queries = GenerationQueries(other_db)
        assert b.identify_voiceprint(probe).matches == []
        assert b.index_sync()["sync"] == "notify"

        ident = a.create_identity("ring", "", "test")
        a.add_sample(ident["id"], to_wav_bytes(espeak(TEXT, "en-us+m3", rate=150), 16000), "test")
        before = queries.n
        assert wait_for(lambda: bool(b.identify_voiceprint(probe).matches), 5), "B never saw A's print"
        # B read the generation once for the change (the search that caught up), not once per search
        assert queries.n - before <= 2, queries.n - before
        steady = queries.n
        for _ in range(20):
            assert b.identify_voiceprint(probe).matches[0].identity_id == ident["id"]
        assert queries.n == steady, "searches queried the generation while the listener was healthy"

        # the listener's backend killed: B falls back to the per-search check at once
        b.listener.retry_s = 3.0  # stay down long enough to see the fallback
        pid = b.listener.backend_pid
        with pg_db.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        assert wait_for(lambda: not b.listener.healthy, 10), "the listener did not notice its backend died"
        sync = b.index_sync()
        assert sync["sync"] == "per_search" and sync["in_sync"], sync
        second = a.create_identity("ring 2", "", "test")
        a.add_sample(second["id"], to_wav_bytes(espeak(TEXT, "en+klatt"), 16000), "test")
        before = queries.n
        found = b.identify_voiceprint(probe, top_k=5)
        assert {m.identity_id for m in found.matches} >= {ident["id"], second["id"]}, found.matches
        assert queries.n > before  # this search asked the database itself
        steady = queries.n
        b.identify_voiceprint(probe)
        assert queries.n > steady  # and so does every search while the listener is down

        assert b.listener.wait_healthy(20), "the listener never came back"
        assert b.listener.reconnects >= 1 and b.listener.backend_pid != pid
        steady = queries.n
        for _ in range(5):
            b.identify_voiceprint(probe)
        assert queries.n == steady and b.index_sync()["sync"] == "notify"
    finally:
        a.close()
        b.close()
        other_db.dispose()
