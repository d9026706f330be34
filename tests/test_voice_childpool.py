"""The recognisers' child pool: nothing starts until asked, children run niced in other processes,
closing is idempotent and a closed pool starts afresh when asked again."""

from __future__ import annotations

import os

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
