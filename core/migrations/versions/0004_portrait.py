"""portrait tables: tag versions and segments (issue 16).

Revision ID: 0004_portrait
Revises: 0003_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_portrait"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    """Guarded create: a database adopted from ``create_all`` may already have the table."""
    return name not in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    if _missing("portrait_segment_members"):
        op.create_table(
            "portrait_segment_members",
            sa.Column("segment_id", sa.String(length=32), nullable=False),
            sa.Column("rank", sa.Integer(), nullable=False),
            sa.Column("customer_id", sa.Integer(), nullable=False),
            sa.Column("score", sa.Float(), nullable=False),
            sa.UniqueConstraint("segment_id", "rank", name="uq_portrait_segment_rank"),
        )
        op.create_index(
            "ix_portrait_member_segment", "portrait_segment_members", ["segment_id"], unique=False
        )
    if _missing("portrait_segments"):
        op.create_table(
            "portrait_segments",
            sa.Column("segment_id", sa.String(length=32), nullable=False),
            sa.Column("requested_by", sa.String(length=200), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("request", sa.JSON(), nullable=False),
            sa.Column("build", sa.JSON(), nullable=False),
            sa.Column("counts", sa.JSON(), nullable=False),
            sa.Column("size", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("segment_id"),
        )
    if _missing("portrait_tag_versions"):
        op.create_table(
            "portrait_tag_versions",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("dimension", sa.String(length=32), nullable=False),
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
            sa.UniqueConstraint("dimension", "version", name="uq_portrait_tag_version"),
        )
        op.create_index(
            "ix_portrait_tag_status", "portrait_tag_versions", ["dimension", "status"], unique=False
        )


def downgrade() -> None:
    op.drop_index("ix_portrait_tag_status", table_name="portrait_tag_versions")
    op.drop_table("portrait_tag_versions")
    op.drop_table("portrait_segments")
    op.drop_index("ix_portrait_member_segment", table_name="portrait_segment_members")
    op.drop_table("portrait_segment_members")
