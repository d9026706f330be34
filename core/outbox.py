"""The transactional outbox: events for the rest of the bank, written with the change they announce.

A part calls :func:`add` with the *same connection* that writes its change, so an event exists if and
only if its change committed (no dual write to a broker that can half-fail). A :class:`Relay` then
publishes pending rows to a :class:`Publisher` (NATS JetStream in :mod:`callvet.core.outbox_nats`, Kafka
in :mod:`callvet.core.outbox_kafka`) and marks them published.

Delivery is at-least-once: a relay that dies after the broker acknowledged a batch but before marking it
publishes that batch again on restart. Every event carries a stable ``event_id`` (a UUID made when the
event is written) that publishers send as the broker's idempotency key (JetStream's ``Nats-Msg-Id``,
a Kafka header and the message key), so the broker's de-duplication window -- and, beyond it, the
consumer keyed on ``event_id`` -- sees each event exactly once.

The relay's position is the table itself (``published_at IS NULL``), not a counter: on PostgreSQL,
sequence values commit out of order, so "everything after id N" would skip a late-committing event.
Several relays (one per replica) may run: on PostgreSQL each claims rows with ``FOR UPDATE SKIP
LOCKED``; on SQLite the database's single writer serialises them. Order is kept per relay batch, not
globally: consumers order by the payload's own fields (``created_at``, ids), never by arrival.

Errors: a publisher raises :class:`PublishError`; the relay leaves the batch pending (``attempts`` + 1)
and retries after a back-off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from callvet.core import ids
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidArgument, Unavailable
from callvet.core.tables import outbox
from sqlalchemy import Connection, delete, func, insert, select, update

__all__ = ["Event", "MemoryPublisher", "PublishError", "Publisher", "Relay", "add", "event", "json_bytes",
           "pending_count"]

log = logging.getLogger(__name__)
SUBJECT_PREFIX = "callvet"
MAX_PAYLOAD_BYTES = 256 * 1024


class PublishError(Unavailable):
    """The broker did not acknowledge every event of a batch; none of the batch counts as published."""

    code = "publish_failed"


@dataclass(frozen=True)
class Event:
    """One event: ``subject`` like ``callvet.decision.created``; ``payload`` JSON-serialisable."""

    subject: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: str(ids.uuid4()))
    created_at: datetime = field(default_factory=utcnow)

    def body(self) -> bytes:
        return json.dumps({"event_id": self.event_id, "subject": self.subject,
                           "aggregate_type": self.aggregate_type, "aggregate_id": self.aggregate_id,
                           "created_at": self.created_at.isoformat(), "data": self.payload},
                          ensure_ascii=False, separators=(",", ":")).encode()


def event(kind: str, action: str, aggregate_id: str, payload: dict[str, Any]) -> Event:
    """An event on subject ``callvet.<kind>.<action>``, e.g. ``event("decision", "created", id, {...})``."""
    return Event(f"{SUBJECT_PREFIX}.{kind}.{action}", kind, str(aggregate_id), payload)


def json_bytes(value: Any) -> bytes:
    """The compact JSON an event payload is stored as."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """The outbox rows of ``events`` (each payload bounded); :func:`add` inserts them."""
    out = []
    for e in events:
        body = json.dumps(e.payload, ensure_ascii=False, separators=(",", ":"), default=str)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise InvalidArgument(f"outbox payload of {e.subject} is {len(body)} bytes; "
                             f"at most {MAX_PAYLOAD_BYTES}")
        out.append({"event_id": e.event_id, "subject": e.subject, "aggregate_type": e.aggregate_type,
                    "aggregate_id": e.aggregate_id, "payload": body, "created_at": e.created_at,
                    "attempts": 0})
    return out


def add(conn: Connection, events: Iterable[Event]) -> int:
    """Write events in the caller's transaction; they commit or roll back with its change."""
    found = rows(events)
    if found:
        conn.execute(insert(outbox), found)
    return len(found)


def pending_count(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)
                                .where(outbox.c.published_at.is_(None))).scalar() or 0)


class Publisher(Protocol):
    """A broker. ``publish`` returns only when the broker acknowledged every event (else raises)."""

    async def connect(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...


class MemoryPublisher:
    """A broker in memory for tests: ``sent`` is every publish (repeats included), ``stored`` what a
    broker de-duplicating by event id keeps; ``fail`` makes the next publishes raise."""

    def __init__(self) -> None:
        self.sent: list[Event] = []
        self.stored: dict[str, Event] = {}
        self.fail = 0

    async def connect(self) -> None:
        return None

    async def publish(self, events: Sequence[Event]) -> None:
        if self.fail:
            self.fail -= 1
            raise PublishError("the in-memory broker was told to fail")
        self.sent.extend(events)
        for e in events:
            self.stored.setdefault(e.event_id, e)

    async def close(self) -> None:
        return None


def _row_event(r: Any) -> Event:
    return Event(subject=r.subject, aggregate_type=r.aggregate_type, aggregate_id=r.aggregate_id,
                 payload=json.loads(r.payload), event_id=r.event_id, created_at=r.created_at)


class Relay:
    """Move pending outbox rows to a publisher; ``run_once`` is one claim-publish-mark cycle.

    ``retention`` deletes rows published longer ago than that (``None`` keeps them forever).
    """

    def __init__(self, db: Database, publisher: Publisher, *, batch: int = 500, poll_seconds: float = 0.05,
                 max_backoff: float = 5.0, retention: timedelta | None = timedelta(days=7)) -> None:
        self.db = db
        self.publisher = publisher
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.retention = retention
        self.published = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = utcnow()

    async def run_once(self) -> int:
        """Publish up to ``batch`` pending events; returns how many were published.

        PostgreSQL: claim, publish and mark in one transaction (rows locked, skipped by other relays).
        SQLite: read, publish, then mark in a second transaction -- a read transaction that upgrades to a
        write fails at once in WAL mode when another connection committed meanwhile, and SQLite has one
        writer anyway; two relays racing there publish some events twice, which the idempotency key
        absorbs.
        """
        claim = (select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id)
                 .limit(self.batch))
        if self.db.dialect != "postgresql":
            with self.db.connect() as conn:
                rows = conn.execute(claim).all()
            if not rows:
                return 0
            await self._publish(rows)
            _failpoint("after_publish")
            with self.db.begin() as conn:
                self._mark(conn, [r.id for r in rows], ok=True)
            return len(rows)
        failed: PublishError | None = None
        with self.db.begin() as conn:
            rows = conn.execute(claim.with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            try:
                await self._publish(rows)
                _failpoint("after_publish")
            except PublishError as exc:
                failed = exc
            self._mark(conn, [r.id for r in rows], ok=failed is None)
        if failed is not None:
            raise failed
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        try:
            await self.publisher.publish([_row_event(r) for r in rows])
        except Exception as exc:
            self.failures += 1
            log.warning("outbox publish of %d events failed: %s", len(rows), exc)
            if self.db.dialect != "postgresql":
                with self.db.begin() as conn:
                    self._mark(conn, [r.id for r in rows], ok=False)
            raise PublishError(str(exc)) from exc
        self.published += len(rows)

    @staticmethod
    def _mark(conn: Connection, ids: list[int], *, ok: bool) -> None:
        values: dict[str, Any] = {"published_at": utcnow()} if ok else {"attempts": outbox.c.attempts + 1}
        conn.execute(update(outbox).where(outbox.c.id.in_(ids), outbox.c.published_at.is_(None))
                     .values(**values))

    async def drain(self, timeout: float = 30.0) -> int:
        """Publish until nothing is pending (tests, shutdown); returns how many were published."""
        total = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            n = await self.run_once()
            total += n
            if n == 0:
                return total
        return total

    def _prune(self) -> None:
        if self.retention is None or utcnow() - self._last_prune < timedelta(minutes=10):
            return
        self._last_prune = utcnow()
        with self.db.begin() as conn:
            conn.execute(delete(outbox).where(outbox.c.published_at < utcnow() - self.retention))

    async def run(self) -> None:
        """Loop until :meth:`stop`: publish, back off exponentially on broker errors (a broker down at
        start is retried the same way, so the service starts without it and catches up later)."""
        backoff = self.poll_seconds
        connected = False
        try:
            while not self._stop.is_set():
                try:
                    if not connected:
                        await self.publisher.connect()
                        connected = True
                    n = await self.run_once()
                    backoff = self.poll_seconds
                    self._prune()
                except PublishError:
                    n = 0
                    backoff = min(self.max_backoff, max(backoff * 2, 0.1))
                except Exception:
                    log.exception("outbox relay cycle failed")
                    n = 0
                    backoff = min(self.max_backoff, max(backoff * 2, 0.1))
                if n < self.batch:
                    await asyncio.sleep(backoff)
        finally:
            await self.publisher.close()

    def start(self) -> None:
        """Run the relay on its own thread and event loop (the API process and the CLI use this)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self.run()), name="outbox-relay",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


_failpoint_hits: dict[str, int] = {}


def _failpoint(name: str) -> None:
    """Crash tests: ``CALLVET_OUTBOX_FAILPOINT=after_publish:N`` SIGKILLs this process after the broker
    acknowledged its N-th batch and before the batch is marked published (the worst moment)."""
    spec = os.environ.get("CALLVET_OUTBOX_FAILPOINT", "")
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _failpoint_hits[name] = _failpoint_hits.get(name, 0) + 1
    if _failpoint_hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
