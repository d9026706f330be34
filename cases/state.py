"""Explicit state enums for cases and queued calls, with the transitions each allows."""

from __future__ import annotations

from enum import StrEnum

from callvet.core.errors import Conflict

__all__ = ["CaseStatus", "QueueStatus", "check_transition"]


class CaseStatus(StrEnum):
    RECEIVED = "received"
    AWAITING_CALL = "awaiting_call"
    IN_CALL = "in_call"
    DECIDING = "deciding"
    REVIEW = "review"
    ISSUED = "issued"
    DECLINED = "declined"
    FAILED = "failed"


_NEXT: dict[CaseStatus, set[CaseStatus]] = {
    CaseStatus.RECEIVED: {CaseStatus.AWAITING_CALL, CaseStatus.REVIEW, CaseStatus.ISSUED,
                          CaseStatus.DECLINED, CaseStatus.FAILED},
    # A call that was claimed but never connected puts the case back in the queue (still awaiting).
    CaseStatus.AWAITING_CALL: {CaseStatus.AWAITING_CALL, CaseStatus.IN_CALL, CaseStatus.DECIDING,
                               CaseStatus.FAILED},
    CaseStatus.IN_CALL: {CaseStatus.DECIDING, CaseStatus.AWAITING_CALL, CaseStatus.FAILED},
    CaseStatus.DECIDING: {CaseStatus.REVIEW, CaseStatus.ISSUED, CaseStatus.DECLINED, CaseStatus.FAILED},
    CaseStatus.REVIEW: {CaseStatus.REVIEW, CaseStatus.ISSUED, CaseStatus.DECLINED, CaseStatus.FAILED},
    CaseStatus.ISSUED: set(),
    CaseStatus.DECLINED: set(),
    CaseStatus.FAILED: set(),
}

TERMINAL = {CaseStatus.ISSUED, CaseStatus.DECLINED, CaseStatus.FAILED}


def check_transition(old: CaseStatus, new: CaseStatus) -> CaseStatus:
    if new not in _NEXT[old]:
        raise Conflict(f"a case cannot go from {old.value} to {new.value}", code="invalid_case_transition",
                       status=old.value)
    return new


class QueueStatus(StrEnum):
    QUEUED = "queued"          # waiting for its time (next_attempt_at) and a robot
    LEASED = "leased"          # a robot claimed it; lease_until bounds how long it may take to dial
    IN_CALL = "in_call"        # the stream joined with the one-time token
    DONE = "done"              # the call ended and its evidence was recorded
    EXHAUSTED = "exhausted"    # retry limit reached without a connected call
