"""The per-member cooldown on votes and corrections: at most ``FEEDBACK_COOLDOWN_USES``
of them per ``FEEDBACK_COOLDOWN_WINDOW_S`` seconds (each "Right" and each label picked
after "Wrong..."), so that one member cannot hammer a server's answers and review queue."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import discord

from bot.core.errors import OnCooldown, UserError
from bot.core.limits import Cooldowns

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot


class FeedbackCooldown(UserError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"Slow down: you have voted or corrected a lot just now. You can give feedback "
            f"again in {retry_after:.0f} s."
        )
        self.retry_after = retry_after


_cooldowns: weakref.WeakKeyDictionary[discord.Client, Cooldowns] = weakref.WeakKeyDictionary()


def count_feedback(bot: ClassifierBot, user_id: int) -> None:
    """Count one vote or correction by ``user_id``; :class:`FeedbackCooldown` past the
    limit."""
    cooldowns = _cooldowns.get(bot)
    if cooldowns is None:
        settings = bot.settings
        cooldowns = Cooldowns(settings.feedback_cooldown_uses, settings.feedback_cooldown_window_s)
        _cooldowns[bot] = cooldowns
    try:
        cooldowns.hit(user_id)
    except OnCooldown as exc:
        raise FeedbackCooldown(exc.retry_after) from None
