"""The transactional outbox (issue 17): events written with their change, relayed to a real NATS JetStream
exactly once after de-duplication, also across a relay SIGKILLed mid-batch.

The broker is a real ``nats-server`` (Debian package ``nats-server``, in ./dev's APT_PACKAGES) started by
the fixture on a free port with its own JetStream store, so the tests neither depend on nor disturb the
machine's shared server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callvet.core import audit, outbox
from callvet.core.db import Database
from callvet.core.outbox import MemoryPublisher, Relay
from callvet.core.outbox_kafka import KafkaPublisher
from callvet.core.outbox_nats import NatsPublisher, redact_nats_url
from callvet.core.tables import audit_log
from callvet.core.tables import outbox as outbox_table
from sqlalchemy import func, select, text, update

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server (Debian package nats-server) is not installed")
    port = _free_port()
    proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
                             str(tmp_path / "js")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("nats-server did not start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _events(n: int, tag: str = "t") -> list[outbox.Event]:
    return [outbox.event("decision", "created", f"{tag}{i}", {"i": i}) for i in range(n)]


def _write(db: Database, events: list[outbox.Event], chunk: int = 500) -> None:
    for i in range(0, len(events), chunk):
        with db.begin() as conn:
            outbox.add(conn, events[i:i + chunk])


async def _stream_ids(url: str, stream: str) -> list[str]:
    """Every stored message's ``Nats-Msg-Id``, in stream order (read back one by one)."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(msg.headers["Nats-Msg-Id"])
        assert len(out) == info.state.messages
        return out
    finally:
        await nc.close()


def _pending(db: Database) -> int:
    return outbox.pending_count(db)


def test_rollback_of_the_change_writes_no_event(db: Database) -> None:
    with pytest.raises(RuntimeError), db.begin() as conn:
        audit.record(conn, "t", "decision.create", "decision", "d1")
        outbox.add(conn, _events(3))
        raise RuntimeError("the change failed after its events were added")
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox_table)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar() == 0
    with db.begin() as conn:
        audit.record(conn, "t", "decision.create", "decision", "d2")
        outbox.add(conn, _events(2))
    assert _pending(db) == 2


def test_oversized_payload_fails_the_change_loudly(db: Database) -> None:
    with pytest.raises(Exception, match="bytes; at most"), db.begin() as conn:
        outbox.add(conn, [outbox.event("x", "y", "1", {"blob": "a" * (outbox.MAX_PAYLOAD_BYTES + 1)})])
    assert _pending(db) == 0


def test_relay_marks_published_and_retries_a_failed_batch(db: Database) -> None:
    evs = _events(25)
    _write(db, evs)
    pub = MemoryPublisher()
    relay = Relay(db, pub, batch=10)
    pub.fail = 1

    async def go() -> int:
        with pytest.raises(outbox.PublishError):
            await relay.run_once()
        return await relay.drain()

    assert asyncio.run(go()) == 25
    assert [e.event_id for e in pub.sent] == [e.event_id for e in evs]  # order kept by one relay
    assert _pending(db) == 0
    with db.connect() as conn:
        attempts = conn.execute(select(outbox_table.c.attempts).order_by(outbox_table.c.id)).scalars().all()
    assert attempts[:10] == [1] * 10 and set(attempts[10:]) == {0}


def test_a_decision_writes_its_event(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    from decision_fixtures import example, make_engine

    client, headers = api
    client.app.state.ctx.service("decision", lambda c: make_engine(c.db))
    r = client.post("/v1/decisions", json={"application": example()}, headers=headers["robot"])
    assert r.status_code == 200, r.text
    did = r.json()["decision_id"]
    db = client.app.state.ctx.db
    with db.connect() as conn:
        rows = conn.execute(select(outbox_table).where(outbox_table.c.subject == "callvet.decision.created")
                            ).all()
    assert [row.aggregate_id for row in rows] == [did]
    assert '"decision":' in rows[0].payload and did in rows[0].payload


def test_nats_stream_holds_each_event_once_after_a_republish(db: Database, nats_url: str) -> None:
    stream, root = "T" + uuid.uuid4().hex[:8], "t" + uuid.uuid4().hex[:8]
    evs = _events(300)
    _write(db, evs)

    async def go() -> tuple[int, int]:
        pub = NatsPublisher(nats_url, stream=stream, subject_root=root)
        relay = Relay(db, pub, batch=64)
        await pub.connect()
        first = await relay.drain()
        # a relay that died after the broker acknowledged but before it marked: the rows come back
        with db.begin() as conn:
            conn.execute(update(outbox_table).where(outbox_table.c.id % 3 == 0).values(published_at=None))
        again = await relay.drain()
        await pub.close()
        return first, again, pub.duplicates

    first, again, dups = asyncio.run(go())
    assert first == 300 and again == 100 and dups == 100
    ids = asyncio.run(_stream_ids(nats_url, stream))
    assert ids == [e.event_id for e in evs]


def _url_for_subprocess(db: Database) -> str:
    if db.dialect != "postgresql":
        return db.url
    with db.connect() as conn:
        schema = conn.execute(text("SHOW search_path")).scalar()
    return f"{db.url}{'&' if '?' in db.url else '?'}options=-csearch_path%3D{schema}"


def _relay_proc(db: Database, tmp_path: Path, nats_url: str, stream: str, root: str, *args: str,
                failpoint: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CALLVET_DATABASE_URL": _url_for_subprocess(db), "CALLVET_DATA_DIR": str(tmp_path),
           "CALLVET_OUTBOX_BROKER": "nats", "CALLVET_NATS_URL": nats_url, "CALLVET_NATS_STREAM": stream,
           "CALLVET_NATS_SUBJECT_ROOT": root, "CALLVET_OUTBOX_BATCH": "100"}
    env.pop("CALLVET_OUTBOX_FAILPOINT", None)
    if failpoint:
        env["CALLVET_OUTBOX_FAILPOINT"] = failpoint
    with open(tmp_path / "relay.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "callvet", "outbox", "relay", *args], env=env,
                                stdout=log, stderr=log)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "relay.log").read_text(errors="replace")[-3000:]


def test_relay_sigkilled_mid_batch_resumes_without_loss_or_duplicate(db: Database, tmp_path: Path,
                                                                     nats_url: str) -> None:
    stream, root = "T" + uuid.uuid4().hex[:8], "t" + uuid.uuid4().hex[:8]
    evs = _events(1000)
    _write(db, evs)
    # killed after the broker acknowledged its third batch, before marking it: the worst moment
    proc = _relay_proc(db, tmp_path, nats_url, stream, root, failpoint="after_publish:3")
    assert proc.wait(timeout=120) == -signal.SIGKILL, _log(tmp_path)
    assert _pending(db) == 800  # two batches marked, the third published but not marked
    # killed again from outside while it publishes (wherever it is)
    proc = _relay_proc(db, tmp_path, nats_url, stream, root)
    end = time.monotonic() + 60
    while _pending(db) > 600 and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = _pending(db)
    assert 0 < left < 800
    done = _relay_proc(db, tmp_path, nats_url, stream, root, "--drain")
    assert done.wait(timeout=120) == 0, _log(tmp_path)
    assert _pending(db) == 0
    ids = asyncio.run(_stream_ids(nats_url, stream))
    assert sorted(ids) == sorted(e.event_id for e in evs)
    assert len(ids) == len(set(ids)) == 1000


def test_kafka_publisher_is_constructible_and_fails_cleanly_without_a_broker() -> None:
    """No Kafka broker runs here: the publisher is built and its produce path exercised up to the
    missing acknowledgement, which must be a PublishError (the relay then retries), not a hang."""
    pub = KafkaPublisher(f"127.0.0.1:{_free_port()}", flush_timeout_s=1.0,
                         config={"message.timeout.ms": 800, "socket.connection.setup.timeout.ms": 1000})
    with pytest.raises(outbox.PublishError):
        asyncio.run(pub.publish(_events(2)))


def test_nats_url_credentials_are_redacted() -> None:
    assert redact_nats_url("nats://svc:s3cret@broker:4222") == "nats://***@broker:4222"
    assert "s3cret" not in repr(NatsPublisher("nats://svc:s3cret@broker:4222"))


def test_the_service_relays_its_events_when_a_broker_is_set(db: Database, tmp_path: Path,
                                                            nats_url: str) -> None:
    """``callvet serve`` with CALLVET_OUTBOX_BROKER=nats: a stored decision reaches the stream by itself."""
    from callvet.api.app import create_app
    from callvet.core import auth
    from callvet.core.settings import Settings
    from decision_fixtures import example, make_engine
    from fastapi.testclient import TestClient

    stream, root = "T" + uuid.uuid4().hex[:8], "t" + uuid.uuid4().hex[:8]
    settings = Settings(data_dir=tmp_path / "var", database_url=db.url, outbox_broker="nats",
                        nats_url=nats_url, nats_stream=stream, nats_subject_root=root)
    settings.ensure_dirs()
    app = create_app(settings, db=db)
    app.state.ctx.service("decision", lambda c: make_engine(c.db))
    key = {"Authorization": f"Bearer {auth.create_key(db, 'robot', 'r')}"}
    with TestClient(app) as client:
        r = client.post("/v1/decisions", json={"application": example()}, headers=key)
        assert r.status_code == 200, r.text
        end = time.monotonic() + 30
        while _pending(db) and time.monotonic() < end:
            time.sleep(0.05)
        assert _pending(db) == 0
    with db.connect() as conn:
        eid = conn.execute(select(outbox_table.c.event_id).where(
            outbox_table.c.aggregate_id == r.json()["decision_id"])).scalar_one()
    assert eid in asyncio.run(_stream_ids(nats_url, stream))


def test_relays_on_several_replicas_claim_disjoint_batches(db: Database) -> None:
    """PostgreSQL: two relays draining at once (each holding its claimed batch while the broker is slow)
    publish every event once between them: SKIP LOCKED hands each batch to one relay only."""
    import threading

    if db.dialect != "postgresql":
        pytest.skip("row claiming is PostgreSQL's; on SQLite one relay runs (docs/events.md)")

    class SlowBroker(MemoryPublisher):
        async def publish(self, events: Any) -> None:
            await asyncio.sleep(0.05)
            await super().publish(events)

    evs = _events(600)
    _write(db, evs)
    pubs = [SlowBroker(), SlowBroker()]
    threads = [threading.Thread(target=lambda p=p: asyncio.run(Relay(db, p, batch=50).drain())) for p in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = ({e.event_id for e in p.sent} for p in pubs)
    assert a and b, "both relays must have taken batches"
    assert not a & b and len(pubs[0].sent) + len(pubs[1].sent) == 600
    assert a | b == {e.event_id for e in evs} and _pending(db) == 0
