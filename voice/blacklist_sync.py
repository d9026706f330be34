"""Index sync by LISTEN/NOTIFY on PostgreSQL (issue 17): the blacklist generation without a query per search.

Every replica keeps its FAISS index in step with ``blacklist_state.generation``. Checked by one query
before each search, that costs a round trip per identify request and per call look; here a background
thread holds one connection that ``LISTEN``\\s on ``callvet_blacklist`` (a trigger on ``blacklist_state``
notifies in the very transaction of the bump, :mod:`callvet.voice.tables`) and re-reads the generation on
each notification, and every ``safety_s`` in case one was missed. The generation stays the truth: the
notification only says when to read it, and its payload is not used.

While the listener is healthy (connected, listening, and its last read succeeded)
:meth:`GenerationListener.generation` returns what it read, and a search compares with that, no query;
when it is not (not yet connected, the connection died, a read failed) it returns None and the blacklist
falls back to the per-search query until the listener has reconnected and read again. A search right
after another replica's commit can miss that change by the notification's delivery time (milliseconds
on one network); /readyz compares the index with the database itself, so it never says "in sync" for a
stale index.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from callvet.core.db import Database
from callvet.voice.tables import NOTIFY_CHANNEL

__all__ = ["GenerationListener"]

log = logging.getLogger(__name__)

_READ = "SELECT generation FROM blacklist_state WHERE id = 1"


class GenerationListener:
    """A daemon thread holding a LISTEN connection of ``db`` (PostgreSQL) and the generation it last read.

    The index itself is synced by the next search (as before: the search sees a newer generation and
    catches up), so a notification never writes the persisted index behind a search's back. ``owner`` is
    a weak reference to the blacklist: one dropped without :meth:`stop` does not keep a thread and a
    connection alive, the thread ends once its owner is gone (and when the table is, as when a test
    schema is dropped)."""

    def __init__(self, db: Database, *, safety_s: float = 5.0, retry_s: float = 1.0,
                 owner: weakref.ref[Any] | None = None) -> None:
        if db.dialect != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self.db = db
        self.safety_s = safety_s
        self.retry_s = retry_s
        self.owner = owner
        self._generation: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: Any = None
        #: The listening backend's pid (None while disconnected): what an operator's
        #: ``pg_terminate_backend`` (or a test) would name.
        self.backend_pid: int | None = None
        self.reconnects = 0
        self.notifications = 0
        self._thread = threading.Thread(target=self._run, name="blacklist-listen", daemon=True)

    def start(self) -> GenerationListener:
        self._thread.start()
        return self

    @property
    def healthy(self) -> bool:
        return self._generation is not None

    def generation(self) -> int | None:
        """The generation read on the last notification or safety read; None while not healthy."""
        return self._generation

    def wait_healthy(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not self.healthy and time.monotonic() < end and not self._stop.is_set():
            time.sleep(0.01)
        return self.healthy

    def stop(self) -> None:
        """Stops within one wake-up (0.2 s: the notification wait is that long, so that a closing
        blacklist does not hold its caller)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._close()

    def _connect(self) -> Any:
        """A connection of the engine's own making (same URL, connect arguments and search path), taken
        out of the pool for good."""
        raw = self.db.engine.raw_connection()
        raw.detach()
        conn = raw.dbapi_connection
        conn.rollback()
        conn.autocommit = True
        return conn

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        self._generation, self.backend_pid = None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)

    def _orphaned(self) -> bool:
        return self.owner is not None and self.owner() is None

    def _read(self, conn: Any) -> None:
        self._generation = int(conn.execute(_READ).fetchone()[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._connect()
                with self._lock:
                    self._conn = conn
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.backend_pid = int(conn.info.backend_pid)
                self._read(conn)  # after LISTEN: a bump from here on is either read now or notified
                last = time.monotonic()
                while not self._stop.is_set():
                    if self._orphaned():
                        self._stop.set()
                        break
                    got = list(conn.notifies(timeout=min(0.2, self.safety_s), stop_after=1))
                    self.notifications += len(got)
                    if got or time.monotonic() - last >= self.safety_s:
                        self._read(conn)
                        last = time.monotonic()
            except Exception as exc:
                if self._stop.is_set() or self._orphaned():
                    break
                if type(exc).__name__ == "UndefinedTable":  # the schema is gone: nothing left to sync
                    log.info("blacklist LISTEN: blacklist_state is gone; listener stops")
                    break
                log.warning("blacklist LISTEN connection lost (%s): searches check the generation "
                            "themselves until it is back", type(exc).__name__)
                self._close()
                self.reconnects += 1
                self._stop.wait(self.retry_s)
        self._close()
