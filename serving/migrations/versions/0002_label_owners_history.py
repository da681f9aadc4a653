"""Labels belong to the principal that asked: the query's owner, the effective label's source, the label
history, and the reload counter every process follows.

Labels recorded before this revision get ``source = "unverified"`` (any caller could give them) and are
copied into ``label_history`` so the history is complete.

Revision ID: 0002_labels
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_labels"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("principal", sa.String(300), nullable=True))
        batch.create_index("ix_queries_principal", ["principal"])
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("principal", sa.String(300), nullable=True))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="unverified"))
    op.create_table(
        "label_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.query_id"), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(300), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("corrected_sql", sa.Text, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_index("ix_label_history_query_id", "label_history", ["query_id"])
    op.execute("INSERT INTO label_history (query_id, ts, principal, source, correct, corrected_sql, comment) "
               "SELECT query_id, ts, principal, source, correct, corrected_sql, comment FROM feedback ORDER BY ts")
    op.create_table(
        "service_control",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_control")
    op.drop_index("ix_label_history_query_id", "label_history")
    op.drop_table("label_history")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("source")
        batch.drop_column("principal")
    with op.batch_alter_table("queries") as batch:
        batch.drop_index("ix_queries_principal")
        batch.drop_column("principal")
