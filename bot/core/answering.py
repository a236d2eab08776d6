"""Answer an interaction in one response when the answer is quick, "thinking..." otherwise.

Discord wants a response to an interaction within 3 seconds. Deferring at once ("thinking")
and sending the answer as a follow-up costs two round trips to Discord for every answer;
most answers are ready in tens of milliseconds. :class:`Answering` sends the answer as the
interaction's response when it is ready within :data:`DEFER_AFTER_S`, and only past that
shows "thinking..." (publicly, or privately where the reply must be private), then sends
the answer as a follow-up. Either way the user sees one message.

Errors keep their path (:func:`bot.core.errors.reply_error`): raised before any response, they
are sent privately as the response; after a "thinking" defer, that message is replaced.

When the "thinking" defer itself fails (Discord refused it, did not answer it in time, or
answered in a way that cannot be read), an answer that is ready a moment later is still
delivered: as a follow-up (Discord may have taken the defer after all), or failing that as
a reply in the channel naming the member; only when neither works does the defer's error
reach the error handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Final

import discord
from discord import app_commands

from bot.core.installs import replies_must_be_private

__all__ = ["DEFER_AFTER_S", "Answering", "defer_public"]

log = logging.getLogger(__name__)

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
        self._delivered = False  # the answer was sent (after a failed defer, too)
        self._defer_at_once = asyncio.Event()  # set by expect(): no need to wait a second

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
        if exc is None and error is not None and not self._delivered:
            raise error

    def expect(self, seconds: float) -> None:
        """The answer is expected in ``seconds`` (e.g. a wait for its turn at the door):
        past ``defer_after_s``, "thinking..." is shown now rather than when the timer ends
        (a wait of more than 3 s would otherwise outlast Discord's limit). The timer's
        task does it, so a defer that fails is handled as the timer's would be."""
        if seconds > self._defer_after_s:
            self._defer_at_once.set()

    async def _defer_later(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._defer_after_s):
                await self._defer_at_once.wait()
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
        """The answer: the response itself, or a follow-up after "thinking" (or after a
        "thinking" that failed: see :meth:`_deliver_after_failed_defer`)."""
        await self._settle()
        error = self._defer_error()
        if error is not None:
            await self._deliver_after_failed_defer(error, kwargs)
            self._delivered = True
            return
        interaction = self._interaction
        if interaction.response.is_done():
            await interaction.followup.send(**kwargs)
        else:
            private = replies_must_be_private(interaction)
            await interaction.response.send_message(ephemeral=private, **kwargs)
        self._delivered = True

    async def _deliver_after_failed_defer(
        self, defer_error: BaseException, kwargs: dict[str, Any]
    ) -> None:
        """A follow-up, else a reply in the channel (not where replies must be private);
        ``defer_error`` is raised when neither could be sent."""
        interaction = self._interaction
        private = replies_must_be_private(interaction)
        log.warning(
            'the "thinking" response failed (%s); sending the answer as a follow-up',
            defer_error,
        )
        try:
            await interaction.followup.send(ephemeral=private, **kwargs)
            return
        except Exception as exc:
            followup_error = exc
        channel = interaction.channel
        if private or not isinstance(channel, discord.abc.Messageable):
            raise defer_error
        log.warning(
            "the follow-up failed too (%s); answering in channel %s",
            followup_error,
            interaction.channel_id,
        )
        command = interaction.command
        used = f"/{command.name}" if isinstance(command, app_commands.Command) else "me"
        asked = f"{interaction.user.mention} asked {used}:"
        note = kwargs.pop("content", None)
        content = f"{asked}\n{note}" if note else asked
        try:
            await channel.send(content=content, **kwargs)
        except Exception as exc:
            log.warning("the channel reply failed too (%s)", exc)
            raise defer_error from None
