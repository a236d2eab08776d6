"""The database schema: typed SQLAlchemy 2 models, one schema for SQLite and PostgreSQL.

Every per-server table carries ``guild_id``; scope ``0`` (:data:`DEFAULT_SCOPE`) holds
what belongs to the default model (images taught in DMs by the bot's operators). Discord
snowflakes are never 0. Changing this file needs a new Alembic revision in
``bot/db/migrations/versions``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_SCOPE = 0


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_generation() -> int:
    """A server's data generation: a new random token at every forget (not a counter, so
    that a server forgotten and re-created never comes back to an old value)."""
    return secrets.randbelow(2**62) + 1


class Base(DeclarativeBase):
    pass


class GuildRow(Base):
    """A server (or the default scope) and its settings."""

    __tablename__ = "guilds"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    include_default: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    left_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: members with this role may teach and review like admins (``/settings trainer_role``)
    trainer_role_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: changes at every forget (revision 0004): a retrain registers its model only if the
    #: generation it started with is still the server's (``ScopeModels.register_model``)
    generation: Mapped[int] = mapped_column(BigInteger, default=new_generation, server_default="0")


class WatchedChannelRow(Base):
    __tablename__ = "watched_channels"
    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LegacyWatchedChannelRow(Base):
    """A channel watched in ``bot-state.json``, whose server is not known yet: it is
    moved to ``watched_channels`` when that server shows up."""

    __tablename__ = "legacy_watched_channels"
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class TaughtImageRow(Base):
    __tablename__ = "taught_images"
    __table_args__ = (
        UniqueConstraint("guild_id", "sha256", "label", name="uq_taught_image"),
        Index("ix_taught_guild_label", "guild_id", "label"),
        Index("ix_taught_guild_user", "guild_id", "user_id"),
        Index("ix_taught_guild_author", "guild_id", "author_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    file_name: Mapped[str] = mapped_column(String(80))  # in the scope's images/ folder
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    #: who posted the image (the source message's author) when that is not ``user_id``'s
    #: own message; ``None`` for rows taught before revision 0004
    author_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: set by the start-up check while the file is missing (``bot.db.repair``)
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelRow(Base):
    """A trained head of a server; exactly one row per scope is current (if any)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("guild_id", "model_id", name="uq_model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[str] = mapped_column(String(80))
    file_name: Mapped[str] = mapped_column(String(120))  # in the scope's models/ folder
    labels: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    #: set by the start-up check while the file is missing: such a model is not served
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RetrainRow(Base):
    """One /retrain attempt (the per-hour quota counts these)."""

    __tablename__ = "retrains"
    __table_args__ = (Index("ix_retrain_guild_started", "guild_id", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # ok | failed
    detail: Mapped[str] = mapped_column(String(200), default="")


class MetaRow(Base):
    """Facts about the database itself (e.g. when the JSON state was imported)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(400))


class AnswerRow(Base):
    """One image answered in a server: what feedback buttons refer to (by ``id``).

    ``file_name`` (in the scope's ``feedback/`` folder) holds the image while it may still
    be corrected; pruning clears it (``bot.db.feedback_data``)."""

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_guild_created", "guild_id", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)  # who asked
    model_id: Mapped[str] = mapped_column(String(80))
    label: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the author of the message whose image was answered (revision 0004; ``None`` before)
    author_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: set by the start-up check while the kept image is missing
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class VoteRow(Base):
    """A member's vote on an answer: one per member (a new vote replaces it)."""

    __tablename__ = "answer_votes"
    answer_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("answers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    right: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the correction
    voted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewItemRow(Base):
    """A member's correction waiting for an admin or trainer (``/review``)."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("guild_id", "sha256", "proposed_label", name="uq_review_item"),
        Index("ix_review_guild_created", "guild_id", "created_at"),
        Index("ix_review_guild_user", "guild_id", "user_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    answer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(80))  # in the scope's feedback/ folder
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    model_label: Mapped[str] = mapped_column(String(100))
    model_confidence: Mapped[float] = mapped_column(Float)
    proposed_label: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the author of the answered image's message, and the channel it was answered in
    #: (revision 0004; ``None`` for older items)
    author_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: set by the start-up check while the image is missing: such an item is not shown
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GuildOptionsRow(Base):
    """A server's options beyond ``guilds`` (revision 0003): per-server thresholds and
    auto-retrain. No row: every option at its default."""

    __tablename__ = "guild_options"
    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    #: the "not sure" threshold in [0, 1]; ``None``: the global ``LOW_CONFIDENCE``
    low_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: retrain after this many new taught images; 0: off
    auto_retrain_after: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: taught images recorded since the last retrain started
    taught_since_retrain: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LabelRuleRow(Base):
    """What to do in watched channels when an image is classified as ``label`` (a label,
    ``unknown``, or ``*`` for any label) with at least ``threshold`` confidence."""

    __tablename__ = "label_rules"
    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(32), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # reply | react | log | delete | nothing
    threshold: Mapped[float] = mapped_column(Float)
    emoji: Mapped[str | None] = mapped_column(String(100), nullable=True)
    log_channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingRemovalRow(Base):
    """Something a committed change made unused and that is removed after the commit
    (revision 0004): a file or a server's folder (``target`` relative to ``DATA_DIR``), or
    a taught image's features in the feature cache (``target`` its sha256). Written in the
    change's own transaction, so a crash between the commit and the removal leaves a row
    that the next start (or the next change) finishes (``bot.db.removals``)."""

    __tablename__ = "pending_removals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # file | folder | features
    target: Mapped[str] = mapped_column(String(400))
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
