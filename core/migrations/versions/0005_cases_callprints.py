"""Tables of issues 11 and 18: cases, their timeline and the robot call queue; the call-print store
(voice reuse) with its tombstones and generation state.

Revision ID: 0005_cases_callprints
Revises: 0004_portrait
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from callvet.core.db import JSONText

revision = "0005_cases_callprints"
down_revision = "0004_portrait"
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    """Guarded create: a database adopted from ``create_all`` may already have the table."""
    return name not in sa.inspect(op.get_bind()).get_table_names()


def _call_print_tables() -> None:
    """Voice reuse (issue 18): call prints and their tombstones."""
    if _missing('call_print_tombstones'):
        op.create_table('call_print_tombstones',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('gen', sa.Integer(), nullable=False),
        sa.Column('print_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index('ix_call_print_tombstones_gen', 'call_print_tombstones', ['gen'], unique=False)
    if _missing('call_prints'):
        op.create_table('call_prints',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('call_id', sa.String(length=32), nullable=False),
        sa.Column('applicant_id', sa.String(length=100), nullable=True),
        sa.Column('case_id', sa.String(length=100), nullable=True),
        sa.Column('application_id', sa.String(length=100), nullable=True),
        sa.Column('backend_id', sa.String(length=200), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('stats_mean', sa.Float(), nullable=False),
        sa.Column('stats_std', sa.Float(), nullable=False),
        sa.Column('net_speech_s', sa.Float(), nullable=False),
        sa.Column('gen', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reuse', JSONText(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('call_id'),
        sqlite_autoincrement=True
        )
        op.create_index('ix_call_prints_backend', 'call_prints', ['backend_id', 'id'], unique=False)
        op.create_index('ix_call_prints_created', 'call_prints', ['created_at'], unique=False)
        op.create_index('ix_call_prints_gen', 'call_prints', ['gen'], unique=False)


def _queue_and_generation_tables() -> None:
    """The robot call queue (issue 11) and the call-print generation state (issue 18)."""
    if _missing('call_queue'):
        op.create_table('call_queue',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('case_id', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('priority', sa.Float(), nullable=False),
        sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('window_start', sa.Integer(), nullable=False),
        sa.Column('window_end', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('max_attempts', sa.Integer(), nullable=False),
        sa.Column('lease_version', sa.Integer(), nullable=False),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('robot', sa.String(length=200), nullable=True),
        sa.Column('token_hash', sa.String(length=64), nullable=True),
        sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('token_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('call_id', sa.String(length=32), nullable=True),
        sa.Column('last_outcome', sa.String(length=32), nullable=True),
        sa.Column('mobile', sa.String(length=40), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('case_id')
        )
        op.create_index('ix_call_queue_call', 'call_queue', ['call_id'], unique=False)
        op.create_index('ix_call_queue_due', 'call_queue', ['status', 'next_attempt_at'], unique=False)
        op.create_index('ix_call_queue_token', 'call_queue', ['token_hash'], unique=False)
    if _missing('callprint_state'):
        op.create_table('callprint_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )


def _case_tables() -> None:
    """Cases and their timeline (issue 11)."""
    if _missing('case_events'):
        op.create_table('case_events',
        sa.Column(
            'id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False
        ),
        sa.Column('case_id', sa.String(length=32), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('key', sa.String(length=100), nullable=True),
        sa.Column('data', JSONText(), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('case_id', 'key', name='uq_case_events_key')
        )
        op.create_index('ix_case_events_case', 'case_events', ['case_id', 'id'], unique=False)
        op.create_index('ix_case_events_pending', 'case_events', ['delivered_at', 'kind'], unique=False)
    if _missing('cases'):
        op.create_table('cases',
        sa.Column('case_id', sa.String(length=32), nullable=False),
        sa.Column('application_id', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('process_key', sa.String(length=64), nullable=False),
        sa.Column('product', sa.String(length=100), nullable=True),
        sa.Column('instance_id', sa.String(length=64), nullable=True),
        sa.Column('prescreen_decision', sa.String(length=32), nullable=True),
        sa.Column('prescreen_decision_id', sa.String(length=32), nullable=True),
        sa.Column('final_decision', sa.String(length=32), nullable=True),
        sa.Column('final_decision_id', sa.String(length=32), nullable=True),
        sa.Column('credit_limit', sa.Float(), nullable=True),
        sa.Column('interview_id', sa.String(length=64), nullable=True),
        sa.Column('call_ids', JSONText(), nullable=True),
        sa.Column('evidence', JSONText(), nullable=True),
        sa.Column('application', JSONText(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('case_id'),
        sa.UniqueConstraint('application_id')
        )
        op.create_index('ix_cases_status', 'cases', ['status', 'created_at'], unique=False)


def upgrade() -> None:
    _call_print_tables()
    _queue_and_generation_tables()
    _case_tables()


def downgrade() -> None:
    op.drop_index('ix_cases_status', table_name='cases')
    op.drop_table('cases')
    op.drop_index('ix_case_events_pending', table_name='case_events')
    op.drop_index('ix_case_events_case', table_name='case_events')
    op.drop_table('case_events')
    op.drop_table('callprint_state')
    op.drop_index('ix_call_queue_token', table_name='call_queue')
    op.drop_index('ix_call_queue_due', table_name='call_queue')
    op.drop_index('ix_call_queue_call', table_name='call_queue')
    op.drop_table('call_queue')
    op.drop_index('ix_call_prints_gen', table_name='call_prints')
    op.drop_index('ix_call_prints_created', table_name='call_prints')
    op.drop_index('ix_call_prints_backend', table_name='call_prints')
    op.drop_table('call_prints')
    op.drop_index('ix_call_print_tombstones_gen', table_name='call_print_tombstones')
    op.drop_table('call_print_tombstones')
