"""Portrait tables: versioned tag definitions, tag builds, and stored campaign selections."""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import Column, DateTime, Float, Index, Integer, String, Table, Text, UniqueConstraint

__all__ = ["segment_members", "segments", "tag_versions"]

tag_versions = Table(
    "portrait_tag_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dimension", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("content", JSONText, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("expected_effect", JSONText, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_by", String(200), nullable=True),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("dimension", "version", name="uq_portrait_tag_version"),
    Index("ix_portrait_tag_status", "dimension", "status"),
)

segments = Table(
    "portrait_segments",
    metadata,
    Column("segment_id", String(32), primary_key=True),
    Column("requested_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("request", JSONText, nullable=False),
    Column("build", JSONText, nullable=False),
    Column("counts", JSONText, nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

segment_members = Table(
    "portrait_segment_members",
    metadata,
    Column("segment_id", String(32), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("customer_id", Integer, nullable=False),
    Column("score", Float, nullable=False),
    UniqueConstraint("segment_id", "rank", name="uq_portrait_segment_rank"),
    Index("ix_portrait_member_segment", "segment_id"),
)
