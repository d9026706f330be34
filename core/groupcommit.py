"""Group commit: many callers' writes share one transaction, and each caller returns once it is durable.

One commit per request bounded the stored-decision rate by the database's commit cost (an fsync on
PostgreSQL, a WAL append on SQLite) and put a lock convoy on SQLite. A :class:`GroupCommitter` owns one
background thread; callers :meth:`~GroupCommitter.submit` an item and wait on its future. The thread takes
whatever has queued (up to ``max_batch``), writes it in one transaction through the ``write`` function and
resolves the futures *after* the commit returns, so a caller never acknowledges a write that could still
be rolled back. While one batch commits, the next one fills: batching grows with load and costs no added
latency when idle (there is no linger timer).

If a batch's transaction fails, its items are retried one per transaction so that one bad item (a
duplicate key, say) fails only its own caller. The queue is bounded: when it is full, ``submit`` waits at
most ``put_timeout`` seconds and then raises :class:`~callvet.core.errors.Unavailable` (HTTP 503) --
backpressure instead of unbounded memory and latency. After :meth:`~GroupCommitter.close` (drain), new
items are refused the same way and queued ones are still written.

With one writer, a request that arrives while a batch commits waits for that commit *and* its own: under
load every request pays two commit latencies (an fsync each), and the rate a fixed number of clients
reaches is bounded by that latency, not by CPU (issue 17: 8 connections, batches of ~4, ~8 ms a batch).
``writers`` > 1 runs several writer threads, each with its own connection, on the same queue: the next
batch is written while the previous one waits for its fsync, and PostgreSQL flushes concurrent commits
together. Items are independent (an idempotent retry racing its original waits on the unique index and
then fails as a duplicate, which the caller answers from the stored row), so their commit order does not
matter. SQLite has one writer at a time anyway, so it keeps one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from callvet.core.db import Database
from callvet.core.errors import InvalidArgument, Unavailable
from sqlalchemy import Connection

__all__ = ["MAX_WRITERS", "GroupCommitter"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_STOP = object()
#: More writers than this only add connections: the commits already overlap.
MAX_WRITERS = 8


def _alive(conn: Connection) -> bool:
    """Whether a connection whose transaction failed can still be used (a duplicate key: yes; a lost
    server: no). Leaves no transaction open."""
    try:
        conn.exec_driver_sql("SELECT 1")
        conn.rollback()
    except Exception:
        return False
    return True


def _drop(held: list[Connection]) -> None:
    if held:
        conn = held.pop()
        try:
            conn.close()
        except Exception:
            log.debug("closing a failed group-commit connection", exc_info=True)


class GroupCommitter(Generic[T]):
    """Batch ``write(conn, items)`` calls from many threads into one transaction each."""

    def __init__(self, db: Database, write: Callable[[Connection, Sequence[T]], None], *,
                 max_batch: int = 256, max_queue: int = 4096, put_timeout: float = 1.0,
                 name: str = "group-commit", writers: int = 1) -> None:
        if max_batch < 1 or max_queue < 1 or not 1 <= writers <= MAX_WRITERS:
            raise InvalidArgument(f"max_batch and max_queue must be positive, writers 1..{MAX_WRITERS}")
        self.db = db
        self.write = write
        self.max_batch = max_batch
        self.put_timeout = put_timeout
        self._q: queue.Queue[tuple[T, Future[None]] | object] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._count_lock = threading.Lock()
        self.batches = 0
        self.items = 0
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                         for i in range(writers)]
        for t in self._threads:
            t.start()

    @property
    def writers(self) -> int:
        return len(self._threads)

    def submit(self, item: T) -> Future[None]:
        """Queue ``item``; the future resolves once its transaction committed (or fails with its error)."""
        if self._closed:
            raise Unavailable("this replica is shutting down; retry on another", code="draining")
        fut: Future[None] = Future()
        try:
            self._q.put((item, fut), timeout=self.put_timeout)
        except queue.Full:
            raise Unavailable("the write queue is full; retry later", code="overloaded") from None
        return fut

    def write_one(self, item: T, timeout: float | None = 30.0) -> None:
        """Submit and wait until durable; re-raises the write's error in the caller's thread."""
        self.submit(item).result(timeout=timeout)

    @property
    def queued(self) -> int:
        return self._q.qsize()

    def _run(self) -> None:
        """One writer: its own connection (in a one-slot list, dropped and reopened on failure)."""
        held: list[Connection] = []
        while True:
            first = self._q.get()
            if first is _STOP:
                _drop(held)
                return
            batch: list[tuple[T, Future[None]]] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._commit(batch, held)
            if stop:
                _drop(held)
                return

    def _commit(self, batch: list[tuple[T, Future[None]]], held: list[Connection]) -> None:
        try:
            self._transaction([item for item, _ in batch], held)
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.warning("group commit of %d items failed (%s); retrying one by one", len(batch),
                        type(exc).__name__)
            for one in batch:
                self._commit([one], held)
            return
        with self._count_lock:
            self.batches += 1
            self.items += len(batch)
        for _, fut in batch:
            fut.set_result(None)

    def _transaction(self, items: list[T], held: list[Connection]) -> None:
        """One transaction on the writer's own connection, kept between batches: checking one out of the
        pool (with its liveness ping) cost more CPU than the inserts. A connection that fails is dropped
        and the next batch opens a fresh one."""
        if not held:
            held.append(self.db.engine.connect())
        conn = held[0]
        try:
            with conn.begin():
                self.write(conn, items)
        except Exception:
            if conn.invalidated or conn.closed or not _alive(conn):
                _drop(held)
            raise

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new items, write the queued ones, stop the thread."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:  # FIFO: each writer takes one stop mark after the items queued before it
            self._q.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        while True:  # an item that raced past the closed check after the stop mark: refused, not lost
            try:
                late = self._q.get_nowait()
            except queue.Empty:
                return
            if late is not _STOP:
                late[1].set_exception(  # type: ignore[index]
                    Unavailable("this replica is shutting down; retry on another", code="draining"))
