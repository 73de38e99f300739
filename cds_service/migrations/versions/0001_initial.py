"""The store as it was before migrations: cards issued, feedback, JWT ids seen.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cards_issued",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(256), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(256), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("override_code", sa.String(256)),
        sa.Column("override_system", sa.String(1024)),
        sa.Column("override_display", sa.String(1024)),
        sa.Column("user_comment", sa.Text),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("card_uuid", "service", "outcome", "outcome_timestamp", name="uq_feedback_event"),
    )
    op.create_index("ix_feedback_rule", "feedback", ["rule_id", "outcome_timestamp"])
    op.create_table(
        "jwt_seen",
        sa.Column("iss", sa.String(512), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jwt_seen_expires_at", "jwt_seen", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jwt_seen_expires_at", table_name="jwt_seen")
    op.drop_table("jwt_seen")
    op.drop_index("ix_feedback_rule", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("cards_issued")
