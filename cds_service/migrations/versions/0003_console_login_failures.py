"""Console login failures: wrong console tokens per client address, for the lockout shared by every instance.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_login_failures_address", "console_login_failures", ["address", "failed_at"])
    op.create_index("ix_console_login_failures_failed_at", "console_login_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_index("ix_console_login_failures_failed_at", table_name="console_login_failures")
    op.drop_index("ix_console_login_failures_address", table_name="console_login_failures")
    op.drop_table("console_login_failures")
