"""Answer an interaction in one response when the answer is quick, "thinking..." otherwise.

Discord wants a response to an interaction within 3 seconds. Deferring at once ("thinking")
and sending the answer as a follow-up costs two round trips to Discord for every answer;
most answers are ready in tens of milliseconds. :class:`Answering` sends the answer as the
interaction's response when it is ready within :data:`DEFER_AFTER_S`, and only past that
shows "thinking..." (publicly, or privately where the reply must be private), then sends
the answer as a follow-up. Either way the user sees one message.

Errors keep their path (:func:`bot.core.errors.reply_error`): raised before any response, they
are sent privately as the response; after a "thinking" defer, that message is replaced.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Final

import discord

from bot.core.installs import replies_must_be_private

__all__ = ["DEFER_AFTER_S", "Answering", "defer_public"]

DEFER_AFTER_S: Final = 1.0
"""Seconds an answer may take before the user is shown "thinking..." (Discord's limit for
the first response is 3 s; this leaves room for a slow defer)."""


async def defer_public(interaction: discord.Interaction) -> None:
    """Show "thinking..." publicly (the answer will replace it), or privately where a
    user-installed app may only answer privately."""
    private = replies_must_be_private(interaction)
    await interaction.response.defer(thinking=True, ephemeral=private)
    interaction.extras["public_defer"] = not private


class Answering:
    """``async with Answering(interaction) as answering: ... await answering.send(...)``.

    Leaving the block (answered or not, e.g. on an error) settles it: no defer starts
    afterwards, and one already under way is waited for, so the error handler sees the
    interaction as it is.
    """

    def __init__(
        self, interaction: discord.Interaction, defer_after_s: float = DEFER_AFTER_S
    ) -> None:
        self._interaction = interaction
        self._defer_after_s = defer_after_s
        self._lock = asyncio.Lock()
        self._settled = False
        self._timer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Answering:
        self._timer = asyncio.create_task(self._defer_later(), name="defer-if-slow")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._settle()
        error = self._defer_error()  # retrieved either way: never "never retrieved"
        if exc is None and error is not None:
            raise error

    async def expect(self, seconds: float) -> None:
        """The answer is expected in ``seconds`` (e.g. a wait for its turn at the door):
        past ``defer_after_s``, "thinking..." is shown now rather than when the timer ends
        (a wait of more than 3 s would otherwise outlast Discord's limit)."""
        if seconds > self._defer_after_s:
            await self._defer_now()

    async def _defer_later(self) -> None:
        await asyncio.sleep(self._defer_after_s)
        await self._defer_now()

    async def _defer_now(self) -> None:
        async with self._lock:
            if not self._settled and not self._interaction.response.is_done():
                await defer_public(self._interaction)

    async def _settle(self) -> None:
        async with self._lock:  # waits for a defer in flight: it is never cut off
            self._settled = True
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()

    def _defer_error(self) -> BaseException | None:
        """Why the "thinking" defer failed (e.g. Discord did not answer it), if it did."""
        timer = self._timer
        if timer is not None and timer.done() and not timer.cancelled():
            return timer.exception()
        return None

    async def send(self, **kwargs: Any) -> None:
        """The answer: the response itself, or a follow-up after "thinking"."""
        await self._settle()
        error = self._defer_error()
        if error is not None:
            raise error
        interaction = self._interaction
        if interaction.response.is_done():
            await interaction.followup.send(**kwargs)
        else:
            private = replies_must_be_private(interaction)
            await interaction.response.send_message(ephemeral=private, **kwargs)
