"""per-label rules and per-server options (thresholds, auto-retrain)

Revision ID: 0003
Revises: 0001 (re-chained after 0002 when both branches merge)
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guild_options",
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("low_confidence", sa.Float(), nullable=True),
        sa.Column("auto_retrain_after", sa.Integer(), server_default="0", nullable=False),
        sa.Column("taught_since_retrain", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("guild_id"),
    )
    op.create_table(
        "label_rules",
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("emoji", sa.String(length=100), nullable=True),
        sa.Column("log_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("guild_id", "label"),
    )


def downgrade() -> None:
    op.drop_table("label_rules")
    op.drop_table("guild_options")
