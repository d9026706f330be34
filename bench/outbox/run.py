"""Outbox relay throughput to a real NATS JetStream, against the peer of publishing the same messages
straight to the same server (no database) in the same run.

    .venv/bin/python bench/outbox/run.py [--events 20000] [--batch 500] [--nats nats://127.0.0.1:4222]
        [--database-url URL]   # default: a SQLite file in a temporary directory

Also measures what writing the events costs the change that carries them: N single-row transactions
(an audit row each, as a decision's commit has) with and without one outbox event in each.
Each run uses a stream and subjects of its own (deleted at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from callvet.core import audit, outbox
from callvet.core.db import Database
from callvet.core.outbox import Relay
from callvet.core.outbox_nats import NatsPublisher


async def _peer(url: str, stream: str, root: str, n: int) -> float:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[root + ".>"], duplicate_window=120)
    evs = [outbox.event("decision", "created", str(i), {"i": i}) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        futs = [await js.publish_async(f"{root}.decision.created", e.body(),
                                       headers={"Nats-Msg-Id": e.event_id}) for e in evs[i:i + 500]]
        await asyncio.gather(*futs)
    dt = time.perf_counter() - t0
    await js.delete_stream(stream)
    await nc.close()
    return n / dt


async def _relay(db: Database, url: str, stream: str, root: str, batch: int) -> tuple[float, int]:
    pub = NatsPublisher(url, stream=stream, subject_root=root)
    relay = Relay(db, pub, batch=batch)
    await pub.connect()
    t0 = time.perf_counter()
    n = await relay.drain(timeout=600)
    dt = time.perf_counter() - t0
    await pub._js.delete_stream(stream)
    await pub.close()
    return n / dt, n


def _write_cost(db: Database, n: int, with_event: bool) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with db.begin() as conn:
            audit.record(conn, "bench", "decision.create", "decision", str(i))
            if with_event:
                outbox.add(conn, [outbox.event("decision", "created", str(i), {"i": i})])
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--database-url", default="")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = Database(a.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}")
    db.create_schema()
    tag = uuid.uuid4().hex[:8]
    peer = asyncio.run(_peer(a.nats, f"BP{tag}", f"bp{tag}", a.events))
    for i in range(0, a.events, 1000):
        with db.begin() as conn:
            outbox.add(conn, [outbox.event("decision", "created", str(j), {"i": j})
                              for j in range(i, min(a.events, i + 1000))])
    rate, n = asyncio.run(_relay(db, a.nats, f"BR{tag}", f"br{tag}", a.batch))
    plain = _write_cost(db, a.writes, False)
    withev = _write_cost(db, a.writes, True)
    print(f"database: {db.dialect}; events: {n}; batch: {a.batch}")
    print(f"relay DB -> JetStream: {rate:,.0f} events/s; peer (same messages straight to JetStream): "
          f"{peer:,.0f}/s; ratio {rate / peer:.2f}")
    print(f"a change's commit: {plain:.3f} ms without, {withev:.3f} ms with one outbox event "
          f"(ratio {withev / plain:.2f})")
    db.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
