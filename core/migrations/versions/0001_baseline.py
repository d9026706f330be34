"""Baseline: the schema of the last release without migrations (before commit 74965f2).

Twenty-one tables of core, voice, calls, questionnaire, decision and workflow; the decision record's
JSON columns are still the JSON type here (0002 makes them text). A database made by ``create_all``
of that release is stamped at this revision by :func:`callvet.core.migrations.upgrade`.

Revision ID: 0001_baseline
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _core_tables() -> None:
    """Keys and the audit log."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_target", "audit_log", ["target_type", "target_id"], unique=False)


def _voice_tables() -> None:
    """The blacklist head tables and calls."""
    op.create_table(
        "blacklist_identities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "blacklist_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("stream_id", sa.String(length=100), nullable=False),
        sa.Column("call_sid", sa.String(length=100), nullable=False),
        sa.Column("application_id", sa.String(length=100), nullable=True),
        sa.Column("language", sa.String(length=32), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("close_code", sa.Integer(), nullable=True),
        sa.Column("audio_s", sa.Float(), nullable=False),
        sa.Column("net_speech_s", sa.Float(), nullable=False),
        sa.Column("alarm", sa.Boolean(), nullable=False),
        sa.Column("alarm_ever", sa.Boolean(), nullable=False),
        sa.Column("verdicts", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_calls_alarm_ever", "calls", ["alarm_ever", "created_at"], unique=False)
    op.create_index("ix_calls_application", "calls", ["application_id"], unique=False)


def _decision_and_questionnaire_tables() -> None:
    """Policies, decisions and interviews."""
    op.create_table(
        "decision_policy_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("expected_effect", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_by", sa.String(length=200), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_policy_version"),
    )
    op.create_index("ix_policy_status", "decision_policy_versions", ["name", "status"], unique=False)
    op.create_table(
        "decision_records",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("credit_limit", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("policy_versions", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=80), nullable=False),
        sa.Column("application", sa.JSON(), nullable=False),
        sa.Column("investigation", sa.JSON(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index("ix_decision_application", "decision_records", ["application_id"], unique=False)
    op.create_table(
        "questionnaire_interviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("risk_score", sa.Float(), nullable=True),
        sa.Column("engine_state", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_questionnaire_interviews_app",
        "questionnaire_interviews",
        ["application_id", "attempt"],
        unique=True,
    )


def _workflow_tables() -> None:
    """Workflow checks, configuration, definitions, effects and events."""
    op.create_table(
        "wf_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("check_key", sa.String(length=200), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rules_checked", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("check_key"),
    )
    op.create_table(
        "wf_config",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "wf_definitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("process_key", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("process_key", "version", name="uq_wf_def_version"),
    )
    op.create_table(
        "wf_effects",
        sa.Column("effect_key", sa.String(length=200), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("effect_key"),
    )
    op.create_index("ix_wf_effects_inst", "wf_effects", ["instance_id"], unique=False)
    op.create_table(
        "wf_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("element", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wf_events_inst", "wf_events", ["instance_id", "id"], unique=False)


def _workflow_review_tables() -> None:
    """Supervision findings, issuances, human tasks and users."""
    op.create_table(
        "wf_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("check_key", sa.String(length=200), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rectified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rectified_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("check_key", "rule_id", name="uq_wf_finding"),
    )
    op.create_index("ix_wf_findings_status", "wf_findings", ["status", "due_at"], unique=False)
    op.create_table(
        "wf_issuances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("effect_key", sa.String(length=200), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=True),
        sa.Column("product", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("effect_key"),
    )
    op.create_table(
        "wf_tasks",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("element", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=True),
        sa.Column("supervise", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("risk_score", sa.Float(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=200), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_wf_tasks_assignee", "wf_tasks", ["assignee", "status"], unique=False)
    op.create_index("ix_wf_tasks_inst", "wf_tasks", ["instance_id"], unique=False)
    op.create_index("ix_wf_tasks_open", "wf_tasks", ["status", "role"], unique=False)
    op.create_table(
        "wf_users",
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("max_amount", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )


def _dependent_tables() -> None:
    """Tables with foreign keys to the ones above, created after them."""
    op.create_table(
        "blacklist_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("backend_id", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("stats_mean", sa.Float(), nullable=False),
        sa.Column("stats_std", sa.Float(), nullable=False),
        sa.Column("net_speech_s", sa.Float(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["identity_id"], ["blacklist_identities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_blacklist_samples_backend", "blacklist_samples", ["backend_id", "id"], unique=False)
    op.create_index("ix_blacklist_samples_identity", "blacklist_samples", ["identity_id"], unique=False)
    op.create_index("ix_blacklist_samples_sha", "blacklist_samples", ["sha256"], unique=False)
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("t_s", sa.Float(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_events_call", "call_events", ["call_id", "id"], unique=False)
    op.create_table(
        "questionnaire_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("interview_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("question", sa.JSON(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("timing", sa.JSON(), nullable=True),
        sa.Column("prosody", sa.JSON(), nullable=True),
        sa.Column("assessment", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["interview_id"], ["questionnaire_interviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_questionnaire_answers_interview", "questionnaire_answers", ["interview_id", "seq"], unique=True
    )
    op.create_table(
        "wf_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("process_key", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_timer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["wf_definitions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wf_inst_status", "wf_instances", ["status"], unique=False)
    op.create_index("ix_wf_inst_subject", "wf_instances", ["subject", "created_at"], unique=False)
    op.create_index("ix_wf_inst_timer", "wf_instances", ["next_timer_at"], unique=False)


def upgrade() -> None:
    _core_tables()
    _voice_tables()
    _decision_and_questionnaire_tables()
    _workflow_tables()
    _workflow_review_tables()
    _dependent_tables()


def downgrade() -> None:
    op.drop_index("ix_wf_inst_timer", table_name="wf_instances")
    op.drop_index("ix_wf_inst_subject", table_name="wf_instances")
    op.drop_index("ix_wf_inst_status", table_name="wf_instances")
    op.drop_table("wf_instances")
    op.drop_index("ix_questionnaire_answers_interview", table_name="questionnaire_answers")
    op.drop_table("questionnaire_answers")
    op.drop_index("ix_call_events_call", table_name="call_events")
    op.drop_table("call_events")
    op.drop_index("ix_blacklist_samples_sha", table_name="blacklist_samples")
    op.drop_index("ix_blacklist_samples_identity", table_name="blacklist_samples")
    op.drop_index("ix_blacklist_samples_backend", table_name="blacklist_samples")
    op.drop_table("blacklist_samples")
    op.drop_table("wf_users")
    op.drop_index("ix_wf_tasks_open", table_name="wf_tasks")
    op.drop_index("ix_wf_tasks_inst", table_name="wf_tasks")
    op.drop_index("ix_wf_tasks_assignee", table_name="wf_tasks")
    op.drop_table("wf_tasks")
    op.drop_table("wf_issuances")
    op.drop_index("ix_wf_findings_status", table_name="wf_findings")
    op.drop_table("wf_findings")
    op.drop_index("ix_wf_events_inst", table_name="wf_events")
    op.drop_table("wf_events")
    op.drop_index("ix_wf_effects_inst", table_name="wf_effects")
    op.drop_table("wf_effects")
    op.drop_table("wf_definitions")
    op.drop_table("wf_config")
    op.drop_table("wf_checks")
    op.drop_index("ix_questionnaire_interviews_app", table_name="questionnaire_interviews")
    op.drop_table("questionnaire_interviews")
    op.drop_index("ix_decision_application", table_name="decision_records")
    op.drop_table("decision_records")
    op.drop_index("ix_policy_status", table_name="decision_policy_versions")
    op.drop_table("decision_policy_versions")
    op.drop_index("ix_calls_application", table_name="calls")
    op.drop_index("ix_calls_alarm_ever", table_name="calls")
    op.drop_table("calls")
    op.drop_table("blacklist_state")
    op.drop_table("blacklist_identities")
    op.drop_index("ix_audit_target", table_name="audit_log")
    op.drop_index("ix_audit_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
