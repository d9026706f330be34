"""The instance state machine: the one place that says which status may follow which.

Every status change of a workflow instance (a step that reaches a wait state or the end, a failed step,
a cancel) goes through :func:`transition`, so a finished instance can never be revived by a stray
writer and a new status cannot be added without saying where it may lead.
"""

from __future__ import annotations

from enum import StrEnum

from callvet.core.errors import Conflict

__all__ = ["ALLOWED", "FINISHED", "InstanceStatus", "transition"]


class InstanceStatus(StrEnum):
    """``running`` until a wait state (so a SIGKILL leaves it ``running`` for the worker to resume)."""

    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"


_ACTIVE = frozenset({InstanceStatus.RUNNING, InstanceStatus.WAITING})
FINISHED = frozenset({InstanceStatus.COMPLETED, InstanceStatus.FAILED})

ALLOWED: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    # A running instance may stay running (a save before a non-transactional handler), wait or end;
    # a waiting one is woken by a message, a task completion or a timer and may do the same.
    InstanceStatus.RUNNING: _ACTIVE | FINISHED,
    InstanceStatus.WAITING: _ACTIVE | FINISHED,
    # Finished states are final: an erased or audited outcome must not change behind the record.
    InstanceStatus.COMPLETED: frozenset(),
    InstanceStatus.FAILED: frozenset(),
}


def transition(old: InstanceStatus | str, new: InstanceStatus | str) -> InstanceStatus:
    """``new`` if an instance in ``old`` may become it, else 409 ``invalid_transition``.

    Strings are accepted (database rows hold the value) but must name a known status.
    """
    before, after = InstanceStatus(old), InstanceStatus(new)
    if after not in ALLOWED[before]:
        raise Conflict(
            f"instance is {before.value}; cannot become {after.value}", code="invalid_transition"
        )
    return after
