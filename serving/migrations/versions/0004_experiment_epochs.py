"""Epochs of an experiment's split: each request records the split its variant was assigned under, and
each split (shares, weights, stopped variant) is recorded once, so the report can check every period's
users against the weights in force then.

Requests recorded before this revision keep ``epoch = NULL``; the report checks them against the
configured weights, as it did before.

Revision ID: 0004_epochs
Revises: 0003_web
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_epochs"
down_revision = "0003_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("epoch", sa.String(16), nullable=True))
    op.create_table(
        "experiment_epochs",
        sa.Column("experiment", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.String(16), primary_key=True),
        sa.Column("shares", sa.Text, nullable=False),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("stopped_variant", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("experiment_epochs")
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("epoch")
