"""Tables shared by every part: API keys and the audit log."""

from __future__ import annotations

from callvet.core.db import JSONText, eager_autovacuum, metadata
from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, LargeBinary, String, Table, Text

__all__ = ["api_keys", "audit_log", "call_print_tombstones", "call_prints", "callprint_state", "outbox"]

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(100), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("details", JSONText, nullable=True),
    Index("ix_audit_target", "target_type", "target_id"),
    Index("ix_audit_at", "at"),
)

# -- issue 17: the transactional outbox --------------------------------------------------------------
# Rows are written in the same transaction as the change they announce; the relay publishes pending rows
# (published_at IS NULL) and marks them, so its position is durable in this table and survives a crash.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("subject", String(200), nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(100), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_pending", "published_at", "id"),
)
eager_autovacuum(outbox)

# -- issue 18 (voice reuse): each call's voiceprint, kept for a configurable retention -----------------
# Raw audio is never stored. ``gen`` is the ``callprint_state`` generation of the transaction that wrote
# the row (the state row is bumped first, so generations commit in order); a process holding a FAISS index
# over these prints catches up with ``gen > last seen`` on rows and tombstones instead of re-reading every
# id. A call's print is replaced (new row, new id, tombstone for the old one) as its speech accumulates;
# ids are never reused (AUTOINCREMENT on SQLite), so a tombstone names exactly one print.
call_prints = Table(
    "call_prints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(32), nullable=False, unique=True),
    Column("applicant_id", String(100), nullable=True),
    Column("case_id", String(100), nullable=True),
    Column("application_id", String(100), nullable=True),
    Column("backend_id", String(200), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("stats_mean", Float, nullable=False),
    Column("stats_std", Float, nullable=False),
    Column("net_speech_s", Float, nullable=False),
    Column("gen", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reuse", JSONText, nullable=True),
    Index("ix_call_prints_gen", "gen"),
    Index("ix_call_prints_created", "created_at"),
    Index("ix_call_prints_backend", "backend_id", "id"),
    sqlite_autoincrement=True,
)

call_print_tombstones = Table(
    "call_print_tombstones",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gen", Integer, nullable=False),
    Column("print_id", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_call_print_tombstones_gen", "gen"),
)

callprint_state = Table(
    "callprint_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False, default=0),
)
