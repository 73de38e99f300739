"""Evaluation log: one row per service call (no patient data).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hook_instance", sa.String(256)),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("rules_fired", sa.Text, nullable=False),
        sa.Column("card_uuids", sa.Text, nullable=False),
    )
    op.create_index("ix_evaluations_evaluated_at", "evaluations", ["evaluated_at"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_evaluated_at", table_name="evaluations")
    op.drop_table("evaluations")
