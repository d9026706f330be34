"""Case tables: the case, its timeline (also the outbox of call results) and the robots' call queue."""

from __future__ import annotations

from callvet.core.db import JSONText, eager_autovacuum, metadata
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["call_queue", "case_events", "cases"]

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(32), primary_key=True),
    # One case per application: a resubmission finds this row instead of opening a second case.
    Column("application_id", String(64), nullable=False, unique=True),
    Column("status", String(24), nullable=False),
    Column("process_key", String(64), nullable=False),
    Column("product", String(100), nullable=True),
    Column("instance_id", String(64), nullable=True),
    Column("prescreen_decision", String(32), nullable=True),
    Column("prescreen_decision_id", String(32), nullable=True),
    Column("final_decision", String(32), nullable=True),
    Column("final_decision_id", String(32), nullable=True),
    Column("credit_limit", Float, nullable=True),
    Column("interview_id", String(64), nullable=True),
    Column("call_ids", JSONText, nullable=True),
    Column("evidence", JSONText, nullable=True),
    Column("application", JSONText, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_cases_status", "status", "created_at"),
)

case_events = Table(
    "case_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    # Events the pump must act on (call_ended, unreachable) carry a key unique per case; delivered_at
    # NULL marks them pending, so the pump's position is durable in this table.
    Column("key", String(100), nullable=True),
    Column("data", JSONText, nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    UniqueConstraint("case_id", "key", name="uq_case_events_key"),
    Index("ix_case_events_case", "case_id", "id"),
    Index("ix_case_events_pending", "delivered_at", "kind"),
)

call_queue = Table(
    "call_queue",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("case_id", String(32), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("priority", Float, nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("window_start", Integer, nullable=False),   # local hour, inclusive
    Column("window_end", Integer, nullable=False),     # local hour, exclusive
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_version", Integer, nullable=False, default=0),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("robot", String(200), nullable=True),
    Column("token_hash", String(64), nullable=True),
    Column("token_expires_at", DateTime(timezone=True), nullable=True),
    Column("token_used_at", DateTime(timezone=True), nullable=True),
    Column("call_id", String(32), nullable=True),
    Column("last_outcome", String(32), nullable=True),
    Column("mobile", String(40), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_call_queue_due", "status", "next_attempt_at"),
    Index("ix_call_queue_token", "token_hash"),
    Index("ix_call_queue_call", "call_id"),
)
eager_autovacuum(case_events)
eager_autovacuum(call_queue)
