"""Parsing and showing the per-server options of /settings (thresholds, auto-retrain)."""

from __future__ import annotations

import math

from bot.core.embeds import percent
from bot.core.errors import UserError
from bot.db import GuildSettings, ServerOptions

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
