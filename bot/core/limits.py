"""Per-member cooldowns: at most ``COOLDOWN_USES`` classifications per ``COOLDOWN_WINDOW_S``.

A request first checks the member's cooldown (:meth:`Cooldowns.check`: a member over it
is told at once and never queued), then goes through the door (:mod:`bot.core.admission`),
and counts as a use only once admitted (:meth:`Cooldowns.hit`), so a refusal or a request
cut off while waiting costs the member nothing. :func:`bot.core.classifying.admitted`
does the three in that order.
"""

from __future__ import annotations

import time

from discord import app_commands

from bot.core.errors import OnCooldown


class Cooldowns:
    """At most ``uses`` classifications per user per ``window_s`` seconds."""

    def __init__(self, uses: int, window_s: float) -> None:
        self.uses, self.window_s = uses, window_s
        self._buckets: dict[int, app_commands.Cooldown] = {}
        self._last_prune = time.monotonic()

    def check(self, user_id: int) -> None:
        """Raise :class:`OnCooldown` if ``user_id``'s next use would be refused; counts
        nothing."""
        bucket = self._buckets.get(user_id)
        retry_after = bucket.get_retry_after() if bucket is not None else 0.0
        if retry_after:
            raise OnCooldown(max(retry_after, 1.0))

    def hit(self, user_id: int) -> None:
        """Count one use by ``user_id``; raise :class:`OnCooldown` when over the limit."""
        self._prune()
        bucket = self._buckets.setdefault(user_id, app_commands.Cooldown(self.uses, self.window_s))
        retry_after = bucket.update_rate_limit()
        if retry_after:
            raise OnCooldown(max(retry_after, 1.0))

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.window_s:
            return
        self._last_prune = now
        for user_id, bucket in list(self._buckets.items()):
            if bucket.get_tokens() >= bucket.rate:
                del self._buckets[user_id]
