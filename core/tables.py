"""Tables shared by every part: API keys and the audit log."""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text

__all__ = ["api_keys", "audit_log"]

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
