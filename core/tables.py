"""Tables shared by every part: API keys and the audit log."""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text

__all__ = ["api_keys", "audit_log", "outbox"]

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
