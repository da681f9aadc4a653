"""The analyst web app: its expiring server-side state (sign-in attempts, sessions, conversations) when no
Redis is configured, and the conversation a follow-up question was asked in.

Revision ID: 0003_web
Revises: 0002_labels
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_web"
down_revision = "0002_labels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_state_expires_at", "web_state", ["expires_at"])
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("context", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("context")
    op.drop_index("ix_web_state_expires_at", "web_state")
    op.drop_table("web_state")
