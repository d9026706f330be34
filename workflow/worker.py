"""The worker's rounds: resume interrupted instances, wake due timers, keep the task board fresh.

``callvet workflow worker`` (and ``POST /v1/workflow/tick``) call :meth:`Worker.run_due` and
:meth:`Worker.tick`. Sharding splits the queue by the last hex digit of the instance id, so ``n``
workers never pick the same instance and need no lock beyond the revision check.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from callvet.core.errors import Conflict, InvalidInput, Unavailable
from callvet.workflow.repository import InstanceRepository
from callvet.workflow.tasks import TaskBoard
from sqlalchemy.exc import OperationalError

__all__ = ["SHARD_COUNTS", "Worker", "shard_suffixes"]

SHARD_COUNTS = (1, 2, 4, 8, 16)


def shard_suffixes(shard: tuple[int, int]) -> list[str]:
    """The hex digits an instance id of shard ``k`` of ``n`` ends in (n a power of two up to 16)."""
    k, n = shard
    if n not in SHARD_COUNTS or not 0 <= k < n:
        raise InvalidInput("shard must be k/n with n in 1, 2, 4, 8, 16 and 0 <= k < n", code="invalid_shard")
    return [f"{d:x}" for d in range(16) if d * n // 16 == k]


class Worker:
    def __init__(
        self,
        repo: InstanceRepository,
        board: TaskBoard,
        advance: Callable[[str, str], Any],
        clock: Callable[[], datetime],
    ) -> None:
        self.repo = repo
        self.board = board
        self.advance = advance
        self.clock = clock

    def run_due(
        self, *, limit: int = 200, actor: str = "system:worker", shard: tuple[int, int] | None = None
    ) -> int:
        """Resume ``running`` instances (interrupted by a crash) and wake those with a due timer."""
        suffixes = shard_suffixes(shard) if shard is not None else None
        done = 0
        for iid in self.repo.due(self.clock(), limit=limit, id_suffixes=suffixes):
            try:
                self.advance(iid, actor)
                done += 1
            except (Conflict, Unavailable, OperationalError):
                continue  # raced, engine down or database busy: the next round retries it
        return done

    def tick(self, *, actor: str = "system:worker") -> dict[str, int]:
        """One scheduler round: resume/wake instances, reminders, escalations, assignment, priorities."""
        advanced = self.run_due(actor=actor)
        stats = self.board.housekeeping()
        stats["advanced"] = advanced
        return stats
