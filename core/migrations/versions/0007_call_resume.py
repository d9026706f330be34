"""calls: resume a live call on another replica (issue 17): resume key, owner epoch, voiceprint checkpoint.

Revision ID: 0007_call_resume
Revises: 0006_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_call_resume"
down_revision = "0006_console"
branch_labels = None
depends_on = None


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns("calls")}


def upgrade() -> None:
    have = _columns()
    with op.batch_alter_table("calls") as batch:
        if "resume_key" not in have:
            batch.add_column(sa.Column("resume_key", sa.String(length=100), nullable=True))
        if "epoch" not in have:
            batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))
        if "checkpoint" not in have:
            batch.add_column(sa.Column("checkpoint", sa.Text(), nullable=True))
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("calls")}
    if "ix_calls_resume_key" not in indexes:
        op.create_index("ix_calls_resume_key", "calls", ["resume_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_calls_resume_key", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("checkpoint")
        batch.drop_column("epoch")
        batch.drop_column("resume_key")
