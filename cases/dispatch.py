"""The robots' outbound call queue: priority, calling hours, leases, retries and one-time stream tokens.

Ordering: ``priority`` (higher first; from risk, amount and the deadline, see :func:`priority_of`), then
the deadline. A row is due when ``next_attempt_at`` has passed; a due row whose applicant is outside the
allowed local hours (``window_start`` <= hour < ``window_end`` in the applicant's time zone) is moved to
the next window opening instead of being dialled, so quiet hours hold whatever the robot's clock says.

Claiming is a conditional ``UPDATE ... WHERE id = :id AND lease_version = :seen AND <claimable>``: of two
robots racing for one row exactly one sees ``rowcount == 1``; the other moves on to the next candidate.
A lease that runs out (a robot that crashed before dialling) makes the row claimable again, with a new
lease version, so a stale robot's later report is refused.

The stream token is 32 random bytes, returned once and stored as its SHA-256; the call server's
admission consumes it with another conditional update (unused, unexpired, this case), so a token opens
exactly one stream.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callvet.cases.state import QueueStatus
from callvet.cases.tables import call_queue
from callvet.core.db import utcnow
from callvet.core.errors import Conflict, InvalidInput, NotFound
from sqlalchemy import Connection, and_, insert, or_, select, update

__all__ = [
    "NO_CONNECT_OUTCOMES",
    "CallWindow",
    "claim",
    "enqueue",
    "hash_token",
    "next_window_start",
    "priority_of",
    "report_outcome",
]

LEASE_S = 120
TOKEN_TTL_S = 15 * 60
MAX_ATTEMPTS = 5
CANDIDATES = 20
#: Back-off after a call that did not connect, first retry; doubled per attempt, capped at 8 h.
BACKOFF_S = {"no_answer": 30 * 60, "busy": 10 * 60, "failed": 15 * 60, "voicemail": 60 * 60}
#: Outcomes a robot may report for a call that never connected; ``invalid_number`` and ``refused``
#: end the attempts at once (dialling again cannot help).
NO_CONNECT_OUTCOMES = (*BACKOFF_S, "invalid_number", "refused")


@dataclass(frozen=True)
class CallWindow:
    timezone: str = "UTC"
    start_hour: int = 9
    end_hour: int = 21

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {self.timezone!r}", code="invalid_field",
                               field="call_window.timezone") from None
        if not (0 <= self.start_hour < self.end_hour <= 24):
            raise InvalidInput("call_window hours must satisfy 0 <= start_hour < end_hour <= 24",
                               code="invalid_field", field="call_window.start_hour")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def priority_of(risk: float, amount: float, deadline: datetime, now: datetime) -> float:
    """Risk first (0..1 model probability of default, x100), then money at stake (log-ish, up to 20),
    then urgency: up to 30 points as the deadline nears within its last 24 h."""
    hours_left = max(0.0, (deadline - now).total_seconds() / 3600)
    urgency = 30.0 * max(0.0, 1.0 - hours_left / 24.0)
    return round(100.0 * max(0.0, min(1.0, risk)) + min(20.0, 2.0 * math.log1p(max(0.0, amount) / 1000))
                 + urgency, 4)


def in_window(window: CallWindow, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(window.timezone))
    return window.start_hour <= local.hour < window.end_hour


def next_window_start(window: CallWindow, at: datetime) -> datetime:
    """The first instant at or after ``at`` inside the window (``at`` itself when already inside)."""
    if in_window(window, at):
        return at
    tz = ZoneInfo(window.timezone)
    local = at.astimezone(tz)
    day = local.date() if local.hour < window.start_hour else local.date() + timedelta(days=1)
    opening = datetime(day.year, day.month, day.day, window.start_hour, tzinfo=tz)
    return opening.astimezone(at.tzinfo)


def _aware(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v if v.tzinfo is not None else v.replace(tzinfo=UTC)


def enqueue(conn: Connection, case_id: str, *, risk: float, amount: float, window: CallWindow,
            deadline: datetime, mobile: str | None, now: datetime | None = None,
            max_attempts: int = MAX_ATTEMPTS) -> str:
    now = now or utcnow()
    qid = uuid.uuid4().hex
    conn.execute(insert(call_queue).values(
        id=qid, case_id=case_id, status=QueueStatus.QUEUED.value,
        priority=priority_of(risk, amount, deadline, now), deadline_at=deadline,
        next_attempt_at=next_window_start(window, now), timezone=window.timezone,
        window_start=window.start_hour, window_end=window.end_hour, attempts=0, max_attempts=max_attempts,
        lease_version=0, mobile=mobile, created_at=now,
    ))
    return qid


def _claimable(now: datetime) -> Any:
    return or_(
        and_(call_queue.c.status == QueueStatus.QUEUED.value, call_queue.c.next_attempt_at <= now),
        and_(call_queue.c.status == QueueStatus.LEASED.value, call_queue.c.lease_until < now),
    )


def claim(db: Any, robot: str, *, now: datetime | None = None,
          lease_s: int = LEASE_S) -> dict[str, Any] | None:
    """Lease the most urgent due call to ``robot``; None when nothing may be dialled now.

    Returns the queue row's fields plus the one-time ``token`` (in clear, only here)."""
    now = now or utcnow()
    for _round in range(5):
        with db.connect() as conn:
            rows = conn.execute(
                select(call_queue).where(_claimable(now))
                .order_by(call_queue.c.priority.desc(), call_queue.c.deadline_at, call_queue.c.id)
                .limit(CANDIDATES)
            ).all()
        if not rows:
            return None
        lost = 0
        for r in rows:
            window = CallWindow(r.timezone, r.window_start, r.window_end)
            if not in_window(window, now):
                with db.begin() as conn:
                    conn.execute(update(call_queue).where(
                        call_queue.c.id == r.id, call_queue.c.lease_version == r.lease_version,
                    ).values(status=QueueStatus.QUEUED.value, next_attempt_at=next_window_start(window, now)))
                continue
            token = secrets.token_urlsafe(32)
            with db.begin() as conn:
                res = conn.execute(update(call_queue).where(
                    call_queue.c.id == r.id, call_queue.c.lease_version == r.lease_version, _claimable(now),
                ).values(
                    status=QueueStatus.LEASED.value, lease_version=r.lease_version + 1,
                    lease_until=now + timedelta(seconds=lease_s), robot=robot[:200],
                    token_hash=hash_token(token), token_expires_at=now + timedelta(seconds=TOKEN_TTL_S),
                    token_used_at=None, call_id=None,
                ))
            if res.rowcount == 1:
                return {
                    "call_request_id": r.id, "case_id": r.case_id, "lease_version": r.lease_version + 1,
                    "lease_until": (now + timedelta(seconds=lease_s)).isoformat(), "attempt": r.attempts + 1,
                    "max_attempts": r.max_attempts, "mobile": r.mobile, "token": token,
                    "token_expires_at": (now + timedelta(seconds=TOKEN_TTL_S)).isoformat(),
                }
            lost += 1
        if lost == 0:
            return None  # every candidate was outside its calling hours and has been moved on
    return None


def report_outcome(conn: Connection, request_id: str, outcome: str, *, lease_version: int, robot: str,
                   now: datetime | None = None) -> dict[str, Any]:
    """A call that never connected: back off and requeue, or give up after the retry limit.

    Returns the row's new ``status`` and ``next_attempt_at``; ``exhausted`` means the case gets no call."""
    if outcome not in NO_CONNECT_OUTCOMES:
        raise InvalidInput(f"outcome must be one of {', '.join(NO_CONNECT_OUTCOMES)}", code="invalid_field",
                           field="outcome")
    now = now or utcnow()
    r = conn.execute(select(call_queue).where(call_queue.c.id == request_id)).first()
    if r is None:
        raise NotFound(f"no call request {request_id!r}", code="call_request_not_found")
    if r.status != QueueStatus.LEASED.value or r.lease_version != lease_version:
        raise Conflict("this lease is no longer yours (expired, reclaimed or already reported)",
                       code="lease_lost", status=r.status, lease_version=r.lease_version)
    attempts = r.attempts + 1
    final = outcome in ("invalid_number", "refused") or attempts >= r.max_attempts
    window = CallWindow(r.timezone, r.window_start, r.window_end)
    if final:
        values: dict[str, Any] = {"status": QueueStatus.EXHAUSTED.value}
        nxt = None
    else:
        delay = min(8 * 3600, BACKOFF_S[outcome] * 2 ** (attempts - 1))
        nxt = next_window_start(window, now + timedelta(seconds=delay))
        values = {"status": QueueStatus.QUEUED.value, "next_attempt_at": nxt}
    res = conn.execute(update(call_queue).where(
        call_queue.c.id == request_id, call_queue.c.lease_version == lease_version,
        call_queue.c.status == QueueStatus.LEASED.value,
    ).values(attempts=attempts, last_outcome=outcome, lease_until=None, token_hash=None,
             lease_version=lease_version + 1, **values))
    if res.rowcount != 1:
        raise Conflict("this lease is no longer yours", code="lease_lost")
    return {"call_request_id": request_id, "case_id": r.case_id, "status": values["status"],
            "attempts": attempts, "max_attempts": r.max_attempts,
            "next_attempt_at": nxt.isoformat() if nxt else None}


def admit(conn: Connection, case_id: str, token: str, call_id: str,
          now: datetime | None = None) -> str | None:
    """Consume a stream token for ``case_id``; the queue row id when it was valid, else None."""
    now = now or utcnow()
    res = conn.execute(update(call_queue).where(
        call_queue.c.case_id == case_id, call_queue.c.token_hash == hash_token(token),
        call_queue.c.token_used_at.is_(None), call_queue.c.token_expires_at > now,
        call_queue.c.status == QueueStatus.LEASED.value,
    ).values(token_used_at=now, status=QueueStatus.IN_CALL.value, call_id=call_id,
             lease_version=call_queue.c.lease_version + 1))
    if res.rowcount != 1:
        return None
    return str(conn.execute(select(call_queue.c.id).where(call_queue.c.case_id == case_id)).scalar_one())


def readmit(conn: Connection, case_id: str, token: str, call_id: str) -> str | None:
    """A resumed call (issue 17) presents its stream token again: valid only for the call the token
    was spent on, while that call is still in progress. The queue row id, else None."""
    row = conn.execute(select(call_queue.c.id).where(
        call_queue.c.case_id == case_id, call_queue.c.token_hash == hash_token(token),
        call_queue.c.call_id == call_id, call_queue.c.status == QueueStatus.IN_CALL.value,
    )).first()
    return None if row is None else str(row.id)

