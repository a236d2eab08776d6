"""The per-server options of /settings and the dashboard's settings page: checking and
applying a change (:func:`change_settings`, one code path for both), and showing them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import discord

from bot.core.embeds import percent
from bot.core.errors import UserError
from bot.db import GuildSettings, ScopedData, ServerOptions

log = logging.getLogger(__name__)

#: ``/settings auto_retrain:`` at most this many new images (0: off).
AUTO_RETRAIN_MAX = 10_000


class InvalidSetting(UserError):
    """A /settings value a user gave is not valid; the message says why."""


def parse_low_confidence(raw: str) -> float | None:
    """``"60"`` or ``"60%"`` -> 0.6; ``"default"`` -> ``None`` (the bot's LOW_CONFIDENCE)."""
    text = raw.strip().lower().removesuffix("%").strip()
    if text == "default":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise InvalidSetting(
            "low_confidence is a percentage from 0 to 100 (like `60`), or `default` for the "
            f"bot's default; {raw[:40]!r} is neither."
        )
    return round(value / 100, 4)


def check_auto_retrain(value: int) -> int:
    if not 0 <= value <= AUTO_RETRAIN_MAX:
        raise InvalidSetting(
            f"auto_retrain is a number of new taught images from 1 to {AUTO_RETRAIN_MAX}, "
            "or 0 to turn it off."
        )
    return value


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What to change; ``None`` leaves a setting as it is."""

    include_default: bool | None = None
    trainer_role_id: int | None = None
    clear_trainer_role: bool = False
    low_confidence: str | None = None  # as typed: "60", "60%" or "default"
    auto_retrain: int | None = None


def check_trainer_role(guild: discord.Guild, role_id: int) -> int:
    """``role_id`` if it is a role of ``guild`` that may be the trainer role."""
    if role_id == guild.id:
        raise InvalidSetting(
            "@everyone can't be the trainer role: every member's correction would be "
            "taught without review."
        )
    if guild.get_role(role_id) is None:
        raise InvalidSetting("That role is not one of this server's roles.")
    return role_id


async def change_settings(
    scope: ScopedData, guild: discord.Guild, change: SettingsChange, *, user_id: int
) -> None:
    """Check every value of ``change`` first (:class:`InvalidSetting`: nothing changed),
    then apply them to the server's settings."""
    if change.trainer_role_id is not None and change.clear_trainer_role:
        raise InvalidSetting("Choose either a trainer role or no trainer role, not both.")
    role_id = (
        check_trainer_role(guild, change.trainer_role_id)
        if change.trainer_role_id is not None
        else None
    )
    threshold = (
        parse_low_confidence(change.low_confidence) if change.low_confidence is not None else None
    )
    after = check_auto_retrain(change.auto_retrain) if change.auto_retrain is not None else None
    if change.include_default is not None:
        await scope.set_include_default(change.include_default)
    if role_id is not None:
        await scope.set_trainer_role(role_id)
    elif change.clear_trainer_role:
        await scope.set_trainer_role(None)
    if change.low_confidence is not None:
        await scope.set_low_confidence(threshold)
    if after is not None:
        await scope.set_auto_retrain(after)
    log.info("server %s: settings changed by %s: %s", scope.scope_id, user_id, change)


def settings_text(
    settings: GuildSettings,
    options: ServerOptions,
    *,
    default_low_confidence: float,
    last_auto_retrain: str | None,
) -> str:
    dataset = "included" if settings.include_default else "not included"
    if options.low_confidence is None:
        low = f"**{percent(default_low_confidence)}** (the bot's default)"
    else:
        low = f"**{percent(options.low_confidence)}** (this server's)"
    if options.auto_retrain_after:
        auto = (
            f"after **{options.auto_retrain_after}** new taught images "
            f"({options.taught_since_retrain} since the last retrain)"
        )
    else:
        auto = "**off**"
    role = (
        f"<@&{settings.trainer_role_id}> may teach, correct answers and /review"
        if settings.trainer_role_id
        else "no trainer role: only administrators teach and review"
    )
    lines = [
        f"The default dataset is **{dataset}** in this server's training set.",
        f"Answers below {low} confidence say they are not sure.",
        f"Auto-retrain: {auto}.",
        f"Trainers: {role}.",
    ]
    if last_auto_retrain:
        lines.append(f"Last auto-retrain {last_auto_retrain}.")
    return "\n".join(lines)
