"""Decision tables: versioned rule policies (JDM graphs) and every decision with its inputs."""

from __future__ import annotations

import json
from typing import Any

from callvet.core.db import JSONText, metadata
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = ["SerializedJSON", "decision_records", "policy_versions"]


class SerializedJSON(TypeDecorator[Any]):
    """JSON stored as text that also accepts text already serialized.

    Batches serialize each application once with pydantic's Rust serializer and share the JSON of
    repeated values (policy versions, reasons); going through ``JSON`` would re-encode every value with
    the stdlib encoder, which was most of the time of storing a batch.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

policy_versions = Table(
    "decision_policy_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
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
    UniqueConstraint("name", "version", name="uq_policy_version"),
    Index("ix_policy_status", "name", "status"),
)

decision_records = Table(
    "decision_records",
    metadata,
    Column("decision_id", String(32), primary_key=True),
    Column("application_id", String(64), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("credit_limit", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("reasons", SerializedJSON, nullable=False),
    Column("policy_versions", SerializedJSON, nullable=False),
    Column("model_version", String(80), nullable=False),
    Column("application", SerializedJSON, nullable=False),
    Column("investigation", SerializedJSON, nullable=True),
    Column("details", SerializedJSON, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_decision_application", "application_id"),
)
