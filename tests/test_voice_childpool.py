"""The recognisers' child pool: nothing starts until asked, children run niced in other processes,
closing is idempotent and a closed pool starts afresh when asked again."""

from __future__ import annotations

import os
from pathlib import Path

from callvet.voice.childpool import ChildPool


def _whoami() -> tuple[int, int]:
    return os.getpid(), os.nice(0)


def test_children_start_on_first_use_niced_and_close_idempotently() -> None:
    pool = ChildPool(1)
    assert pool.pool is None
    try:
        pid, nice = pool.executor().submit(_whoami).result(timeout=60)
        assert pid != os.getpid() and nice == min(19, os.nice(0) + 10)
        assert pool.executor() is pool.pool
    finally:
        pool.close()
    assert pool.pool is None
    pool.close()
    try:
        assert pool.executor().submit(_whoami).result(timeout=60)[0] != os.getpid()
    finally:
        pool.close()


def test_children_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A server killed with SIGKILL runs no shutdown; its recognisers must not live on as orphans."""
    import signal
    import subprocess
    import sys
    import time

    script = ("import os, sys, time\n"
              "from callvet.voice.childpool import ChildPool\n"
              "pool = ChildPool(1)\n"
              "print(pool.executor().submit(os.getpid).result(timeout=60), flush=True)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"child {child} outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=30)
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
