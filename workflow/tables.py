"""Workflow tables: process definitions, instances with their serialised state, events, human tasks,
service-task effects, people and skills, configuration, issuances and supervision findings.

``wf_instances.rev`` is the optimistic-locking counter: every save is ``UPDATE ... WHERE rev = :seen``,
so two writers can never both advance one instance. ``wf_effects.effect_key`` (instance id + task) is
unique, which is what makes service-task side effects happen at most once.
"""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "wf_checks",
    "wf_config",
    "wf_definitions",
    "wf_effects",
    "wf_events",
    "wf_findings",
    "wf_instances",
    "wf_issuances",
    "wf_tasks",
    "wf_users",
]

wf_definitions = Table(
    "wf_definitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("process_key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("xml", Text, nullable=False),
    Column("meta", JSONText, nullable=False),
    Column("active", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False, default=""),
    UniqueConstraint("process_key", "version", name="uq_wf_def_version"),
)

wf_instances = Table(
    "wf_instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("definition_id", Integer, ForeignKey("wf_definitions.id"), nullable=False),
    Column("process_key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("state", Text, nullable=False),
    Column("data", JSONText, nullable=False),
    Column("subject", String(64), nullable=True),
    Column("rev", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("next_timer_at", DateTime(timezone=True), nullable=True),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_wf_inst_status", "status"),
    Index("ix_wf_inst_timer", "next_timer_at"),
    Index("ix_wf_inst_subject", "subject", "created_at"),
)

wf_events = Table(
    "wf_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance_id", String(36), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("element", String(200), nullable=False, default=""),
    Column("details", JSONText, nullable=True),
    Index("ix_wf_events_inst", "instance_id", "id"),
)

wf_tasks = Table(
    "wf_tasks",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("instance_id", String(36), nullable=False),
    Column("element", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("skill", String(64), nullable=True),
    Column("supervise", String(32), nullable=True),
    Column("priority", Float, nullable=False, default=0.0),
    Column("amount", Float, nullable=True),
    Column("risk_score", Float, nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("assignee", String(100), nullable=True),
    Column("assigned_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("completed_by", String(200), nullable=True),
    Column("reminded_at", DateTime(timezone=True), nullable=True),
    Column("escalated_at", DateTime(timezone=True), nullable=True),
    Index("ix_wf_tasks_open", "status", "role"),
    Index("ix_wf_tasks_inst", "instance_id"),
    Index("ix_wf_tasks_assignee", "assignee", "status"),
)

wf_effects = Table(
    "wf_effects",
    metadata,
    Column("effect_key", String(200), primary_key=True),
    Column("instance_id", String(36), nullable=False),
    Column("handler", String(100), nullable=False),
    Column("result", JSONText, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_wf_effects_inst", "instance_id"),
)

wf_issuances = Table(
    "wf_issuances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("effect_key", String(200), nullable=False, unique=True),
    Column("instance_id", String(36), nullable=False),
    Column("application_id", String(64), nullable=True),
    Column("product", String(100), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("amount", Float, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

wf_users = Table(
    "wf_users",
    metadata,
    Column("user_id", String(100), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("skills", JSONText, nullable=False),
    Column("max_amount", Float, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
)

wf_config = Table(
    "wf_config",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSONText, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False, default=""),
)

wf_checks = Table(
    "wf_checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("check_key", String(200), nullable=False, unique=True),
    Column("instance_id", String(36), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("rules_checked", Integer, nullable=False),
    Column("violations", Integer, nullable=False),
)

wf_findings = Table(
    "wf_findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("check_key", String(200), nullable=False),
    Column("instance_id", String(36), nullable=False),
    Column("rule_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("rectified_at", DateTime(timezone=True), nullable=True),
    Column("rectified_by", String(200), nullable=True),
    Column("note", Text, nullable=True),
    UniqueConstraint("check_key", "rule_id", name="uq_wf_finding"),
    Index("ix_wf_findings_status", "status", "due_at"),
)
