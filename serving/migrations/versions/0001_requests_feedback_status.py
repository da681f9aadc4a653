"""Requests, feedback labels and experiment status.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queries",
        sa.Column("query_id", sa.String(36), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_hash", sa.String(64), nullable=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("random_assignment", sa.Boolean, nullable=False),
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("prompt_version", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("database", sa.String(64), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("sql", sa.Text, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("rows_returned", sa.Integer, nullable=True),
    )
    op.create_index("ix_queries_ts", "queries", ["ts"])
    op.create_index("ix_queries_user_hash", "queries", ["user_hash"])
    op.create_index("ix_queries_experiment", "queries", ["experiment"])
    op.create_table(
        "feedback",
        sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.query_id"), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("corrected_sql", sa.Text, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_table(
        "experiment_status",
        sa.Column("experiment", sa.String(64), primary_key=True),
        sa.Column("stopped_variant", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("experiment_status")
    op.drop_table("feedback")
    op.drop_index("ix_queries_experiment", "queries")
    op.drop_index("ix_queries_user_hash", "queries")
    op.drop_index("ix_queries_ts", "queries")
    op.drop_table("queries")
