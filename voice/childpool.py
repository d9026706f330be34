"""Recognisers' child processes, started on first use and at a lower CPU priority.

Speech recognisers (PocketSphinx, Whisper) hold the GIL or whole cores while they decode; in the call
server's process that would stall every live call's VAD and voiceprint. They decode in spawned
children instead, niced, because a transcript may come late and a verdict may not; and they end
with their parent, however it ends.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["ChildPool"]


def _child_init() -> None:
    """Niced, and gone when its parent is: a server killed with SIGKILL runs no atexit or pool shutdown,
    and its recognisers (~160 MB each) would otherwise live on as orphans. A watcher thread rather than
    PR_SET_PDEATHSIG, which fires when the *thread* that started the child ends (an idle worker thread
    of a thread pool, say), not the process."""
    os.nice(10)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="callvet-parent-watch", daemon=True).start()


class ChildPool:
    """A lazily started, thread-safe :class:`ProcessPoolExecutor` of ``processes`` spawned children
    (0: the owner decodes in its own thread and never asks for the pool)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self.pool is None:
                self.pool = ProcessPoolExecutor(max_workers=self.processes,
                                                mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_child_init)
                atexit.register(self.close)
            return self.pool

    def close(self) -> None:
        with self._lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
