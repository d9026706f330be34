"""Recognisers' child processes, started on first use and at a lower CPU priority.

Speech recognisers (PocketSphinx, Whisper) hold the GIL or whole cores while they decode; in the call
server's process that would stall every live call's VAD and voiceprint. They decode in spawned
children instead, niced, because a transcript may come late and a verdict may not.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

__all__ = ["ChildPool"]


def _lower_priority() -> None:
    os.nice(10)


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
                                                initializer=_lower_priority)
                atexit.register(self.close)
            return self.pool

    def close(self) -> None:
        with self._lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
