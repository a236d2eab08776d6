"""data safety (issue 19): files marked missing instead of deleted, the server generation
a retrain checks, who authored an image, review items' channel, pending removals

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Existing rows keep what they had: ``author_id`` and ``channel_id`` stay NULL (unknown),
nothing is marked missing, every server's generation starts at 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _missing_since() -> sa.Column:
    return sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("guilds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("taught_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(_missing_since())
        batch_op.create_index("ix_taught_guild_author", ["guild_id", "author_id"], unique=False)
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(_missing_since())
    with op.batch_alter_table("answers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(_missing_since())
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("channel_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(_missing_since())
        batch_op.create_index("ix_review_guild_user", ["guild_id", "user_id"], unique=False)
    op.create_table(
        "pending_removals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("pending_removals")
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_review_guild_user")
        batch_op.drop_column("missing_since")
        batch_op.drop_column("channel_id")
        batch_op.drop_column("author_id")
    with op.batch_alter_table("answers", schema=None) as batch_op:
        batch_op.drop_column("missing_since")
        batch_op.drop_column("author_id")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("missing_since")
    with op.batch_alter_table("taught_images", schema=None) as batch_op:
        batch_op.drop_index("ix_taught_guild_author")
        batch_op.drop_column("missing_since")
        batch_op.drop_column("author_id")
    with op.batch_alter_table("guilds", schema=None) as batch_op:
        batch_op.drop_column("generation")
