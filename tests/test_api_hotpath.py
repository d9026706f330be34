"""Issue 17's hot path: cached keys still revoke within a second everywhere, decisions stored by group
commit are durable before they are answered (a failing batch fails only its own requests), a retried
idempotent request is applied once, and no key reaches a log."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.errors import Unavailable
from callvet.core.groupcommit import GroupCommitter
from callvet.decision.tables import decision_records
from sqlalchemy import Column, Connection, Integer, MetaData, Table, func, insert, select

APP = json.loads((Path(__file__).parents[1] / "docs/contracts/application.example.json").read_text())


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_revocation_on_another_replica_takes_effect_within_the_ttl(db: Database) -> None:
    token = auth.create_key(db, "robot", "r")
    other = Database(db.url)  # another replica: its own handle, its own cache
    other.engine = db.engine  # same database (and, on PostgreSQL, the test's schema)
    clock = Clock()
    cache = auth.KeyCache(clock=clock)
    assert auth.authenticate(db, token, cache=cache) is not None
    auth.revoke_key(other, token.split("_")[1])
    clock.t += 0.5
    assert auth.authenticate(db, token, cache=cache) is not None  # inside the documented window
    clock.t += auth.CACHE_SECONDS
    assert auth.authenticate(db, token, cache=cache) is None
    clock.t += 10 * auth.CACHE_SECONDS
    assert auth.authenticate(db, token, cache=cache) is None  # a revoked key stays refused


def test_revocation_on_this_replica_is_immediate(db: Database) -> None:
    token = auth.create_key(db, "robot", "r")
    assert auth.authenticate(db, token) is not None and auth.authenticate_cached(db, token) is not None
    auth.revoke_key(db, token.split("_")[1])
    assert auth.authenticate_cached(db, token) is auth.MISS
    assert auth.authenticate(db, token) is None


def test_revoked_key_is_refused_by_the_api_within_a_second(
        api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, _ = api
    db: Database = client.app.state.ctx.db
    token = auth.create_key(db, "robot", "soon-revoked")
    hdr = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/decisions", headers=hdr, json={"application": APP}).status_code == 200
    with db.begin() as conn:  # as another replica would: the row changes, this process's cache does not
        conn.execute(auth.api_keys.update().where(auth.api_keys.c.key_id == token.split("_")[1])
                     .values(revoked_at=auth.utcnow()))
    time.sleep(auth.CACHE_SECONDS + 0.1)
    assert client.post("/v1/decisions", headers=hdr, json={"application": APP}).status_code == 401


def test_concurrent_decisions_are_stored_before_they_are_answered(
        api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = api
    ctx = client.app.state.ctx

    def one(i: int) -> dict[str, Any]:
        r = client.post("/v1/decisions", headers=h["robot"],
                        json={"application": {**APP, "application_id": f"GC-{i}"}})
        assert r.status_code == 200, r.text
        with ctx.db.connect() as conn:  # durable when answered: visible to any other connection now
            assert conn.execute(select(decision_records.c.application_id).where(
                decision_records.c.decision_id == r.json()["decision_id"])).scalar() == f"GC-{i}"
        return r.json()

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(60)))
    with ctx.db.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(decision_records)
                              .where(decision_records.c.application_id.like("GC-%"))).scalar()
    assert stored == 60 == len({a["decision_id"] for a in answers})
    committer = ctx.decision.recorder.committer
    assert committer.items >= 60 and committer.batches <= committer.items


def test_idempotent_retry_returns_the_stored_decision(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = api
    hdr = {**h["robot"], "Idempotency-Key": "channel-7-req-1"}
    first = client.post("/v1/decisions", headers=hdr, json={"application": APP})
    again = client.post("/v1/decisions", headers=hdr, json={"application": APP})
    assert first.status_code == again.status_code == 200
    assert again.json()["decision_id"] == first.json()["decision_id"] and again.json()["replayed"] is True
    assert again.json()["decision"] == first.json()["decision"]
    with client.app.state.ctx.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(decision_records).where(
            decision_records.c.decision_id == first.json()["decision_id"])).scalar() == 1
    other = client.post("/v1/decisions", headers=hdr,
                        json={"application": {**APP, "application_id": "SOMEONE-ELSE"}})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    other_caller = client.post("/v1/decisions", json={"application": APP},
                               headers={**h["analyst"], "Idempotency-Key": "channel-7-req-1"})
    assert other_caller.status_code == 200
    assert other_caller.json()["decision_id"] != first.json()["decision_id"]


def test_idempotent_workflow_start(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = api
    hdr = {**h["analyst"], "Idempotency-Key": "wf-start-1"}
    body = {"process_key": "card_issuance", "data": {"application": APP}}
    first = client.post("/v1/workflow/instances", headers=hdr, json=body)
    again = client.post("/v1/workflow/instances", headers=hdr, json=body)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["instance_id"] == again.json()["instance_id"] and again.json()["replayed"] is True
    listed = client.get("/v1/workflow/instances", headers=h["analyst"]).json()["instances"]
    assert [i["instance_id"] for i in listed] == [first.json()["instance_id"]]


_meta = MetaData()
_items = Table("gc_probe", _meta, Column("v", Integer, primary_key=True))


def _write(conn: Connection, items: Any) -> None:
    conn.execute(insert(_items), [{"v": v} for v in items])


def test_a_failing_batch_fails_only_its_bad_request(sqlite_db: Database) -> None:
    _meta.create_all(sqlite_db.engine)
    gate = threading.Event()

    def gated(conn: Connection, items: Any) -> None:
        gate.wait(10)
        _write(conn, items)

    gc = GroupCommitter(sqlite_db, gated)
    first = gc.submit(0)  # holds the writer while the next ones queue into one batch
    futures = {v: gc.submit(v) for v in (1, 2, 3, 2, 4)}  # the second 2 is a duplicate key
    gate.set()
    first.result(10)
    outcomes = []
    for v, f in [(1, futures[1]), (3, futures[3]), (4, futures[4])]:
        f.result(10)
        outcomes.append(v)
    dup = [f for v, f in futures.items() if v == 2]
    assert len(dup) == 1  # dict kept the later future: the duplicate
    with pytest.raises(Exception, match=r"UNIQUE|unique|duplicate"):
        dup[0].result(10)
    with sqlite_db.connect() as conn:
        assert sorted(conn.execute(select(_items.c.v)).scalars()) == [0, 1, 2, 3, 4]
    gc.close()
    with pytest.raises(Unavailable):
        gc.submit(9)


def test_a_database_that_fails_answers_no_request(sqlite_db: Database) -> None:
    def broken(conn: Connection, items: Any) -> None:
        raise RuntimeError("database gone")

    gc = GroupCommitter(sqlite_db, broken)
    futures = [gc.submit(i) for i in range(5)]
    for f in futures:
        with pytest.raises(RuntimeError, match="database gone"):
            f.result(10)
    gc.close()


def test_no_key_in_logs(api: tuple[Any, dict[str, dict[str, str]]], caplog: pytest.LogCaptureFixture) -> None:
    client, h = api
    token = h["robot"]["Authorization"].split()[1]
    caplog.set_level(logging.DEBUG)
    client.post("/v1/decisions", headers=h["robot"], json={"application": APP})
    client.post("/v1/decisions", headers={"Authorization": token[:-3] + "xyz"}, json={"application": APP})
    client.get(f"/v1/decisions/nope?token={token}", headers=h["analyst"])
    text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert caplog.records
    assert token.split("_", 2)[2] not in text and token[:-3] not in text


def test_a_second_writer_commits_while_the_first_waits(db: Database) -> None:
    """With two writers, a batch does not wait for the one before it to commit (its fsync): the
    second item is durable while the first writer is still held."""
    _meta.create_all(db.engine)
    gate, entered = threading.Event(), threading.Event()

    def gated(conn: Connection, items: Any) -> None:
        if 0 in items:
            entered.set()
            gate.wait(10)
        _write(conn, items)

    gc = GroupCommitter(db, gated, writers=2)
    assert gc.writers == 2
    held = gc.submit(0)
    assert entered.wait(10)  # a writer took item 0 alone and is held
    gc.submit(1).result(10)  # written by the other writer while the first one is held
    assert not held.done()
    gate.set()
    held.result(10)
    with db.connect() as conn:
        assert sorted(conn.execute(select(_items.c.v)).scalars()) == [0, 1]
    gc.close()
    assert gc.batches == gc.items == 2
    with pytest.raises(Unavailable):
        gc.submit(9)


def test_close_writes_what_every_writer_had_queued(db: Database) -> None:
    _meta.create_all(db.engine)
    gc = GroupCommitter(db, _write, writers=3)
    futures = [gc.submit(v) for v in range(40)]
    gc.close()
    for f in futures:
        f.result(10)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(_items)).scalar() == 40


def test_the_recorder_uses_several_writers_on_postgresql_only(db: Database) -> None:
    from callvet.decision.recorder import PG_WRITERS, DecisionRecorder

    rec = DecisionRecorder(db)
    try:
        assert rec.committer.writers == (1 if db.dialect == "sqlite" else PG_WRITERS)
    finally:
        rec.close()
    with pytest.raises(Exception, match="writers"):
        GroupCommitter(db, _write, writers=0)
