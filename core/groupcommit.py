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

__all__ = ["GroupCommitter"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_STOP = object()


def _alive(conn: Connection) -> bool:
    """Whether a connection whose transaction failed can still be used (a duplicate key: yes; a lost
    server: no). Leaves no transaction open."""
    try:
        conn.exec_driver_sql("SELECT 1")
        conn.rollback()
    except Exception:
        return False
    return True


class GroupCommitter(Generic[T]):
    """Batch ``write(conn, items)`` calls from many threads into one transaction each."""

    def __init__(self, db: Database, write: Callable[[Connection, Sequence[T]], None], *,
                 max_batch: int = 256, max_queue: int = 4096, put_timeout: float = 1.0,
                 name: str = "group-commit") -> None:
        if max_batch < 1 or max_queue < 1:
            raise InvalidArgument("max_batch and max_queue must be positive")
        self.db = db
        self.write = write
        self.max_batch = max_batch
        self.put_timeout = put_timeout
        self._q: queue.Queue[tuple[T, Future[None]] | object] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.batches = 0
        self.items = 0
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

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
        while True:
            first = self._q.get()
            if first is _STOP:
                self._drop()
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
            self._commit(batch)
            if stop:
                self._drop()
                return

    def _commit(self, batch: list[tuple[T, Future[None]]]) -> None:
        try:
            self._transaction([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.warning("group commit of %d items failed (%s); retrying one by one", len(batch),
                        type(exc).__name__)
            for one in batch:
                self._commit([one])
            return
        self.batches += 1
        self.items += len(batch)
        for _, fut in batch:
            fut.set_result(None)

    def _transaction(self, items: list[T]) -> None:
        """One transaction on the thread's own connection, kept between batches: checking one out of the
        pool (with its liveness ping) cost more CPU than the inserts. A connection that fails is dropped
        and the next batch opens a fresh one."""
        if self._conn is None:
            self._conn = self.db.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                self.write(conn, items)
        except Exception:
            if conn.invalidated or conn.closed or not _alive(conn):
                self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing a failed group-commit connection", exc_info=True)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new items, write the queued ones, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        self._thread.join(timeout)
        while True:  # an item that raced past the closed check after the stop mark: refused, not lost
            try:
                late = self._q.get_nowait()
            except queue.Empty:
                return
            if late is not _STOP:
                late[1].set_exception(  # type: ignore[index]
                    Unavailable("this replica is shutting down; retry on another", code="draining"))
