"""Errors a user can cause, and the one place that turns any error into a reply.

Every user-facing error carries the short sentence the user sees. ``explain`` maps known
errors (ours, the backend's, the image errors, discord.py's check failures) to such a
sentence; anything else is a bug: it is logged with its traceback and the user gets a
generic apology.
"""

from __future__ import annotations

import contextlib
import logging

import discord
from discord import app_commands

from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.logconfig import set_request_context
from bot.core.request_deadline import DiscordRequestFailed, DiscordRequestTimeout
from golem_backend import BackendBusy, BackendError, BackendTimeout, BackendUnavailable, ImageError

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side. The error has been logged."


class UserError(app_commands.AppCommandError):
    """An error whose message is meant for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DownloadError(UserError):
    """The attachment could not be fetched (host not allowed, HTTP error, timeout...)."""


class NoImages(UserError):
    """The message or command carried nothing that looks like an image."""


class OnCooldown(UserError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Slow down: you can classify again in {retry_after:.0f} s.")
        self.retry_after = retry_after


class Busy(UserError):
    """Refused at the door: the bot has too much to do (``bot.core.admission``'s refusals
    are its kinds, each with its own message)."""

    def __init__(self) -> None:
        super().__init__("I'm busy with other images right now. Please try again in a few seconds.")


class ShuttingDown(UserError):
    def __init__(self) -> None:
        super().__init__("I'm restarting right now. Please try again in a minute.")


class NotAdmin(app_commands.CheckFailure):
    """The user is neither a server administrator nor listed in ``ADMIN_USER_IDS``."""


def explain(error: BaseException) -> str | None:
    """The message for a known error, or ``None`` when it is a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserError):
        return error.message
    if isinstance(error, ImageError):
        return error.message
    if isinstance(error, DiscordRequestTimeout):
        return "Discord did not answer in time. Please try again."
    if isinstance(error, DiscordRequestFailed):
        return "Discord's answer could not be read. Please try again."
    if isinstance(error, BackendBusy):
        return error.message or "The classifier is busy right now. Please try again soon."
    if isinstance(error, BackendTimeout):
        return error.message or "The classifier took too long to answer. Please try again."
    if isinstance(error, BackendUnavailable):
        return error.message or "The classifier is unavailable right now. Please try later."
    if isinstance(error, BackendError):
        return error.message or "The classifier failed. Please try again later."
    if isinstance(error, NotAdmin | app_commands.MissingPermissions):
        return "This command is only for server administrators and the bot's owners."
    if isinstance(error, app_commands.BotMissingPermissions):
        perms = ", ".join(error.missing_permissions)
        return f"I'm missing permissions in this channel: {perms}."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    return None


async def reply_error(interaction: discord.Interaction, message: str) -> None:
    """Tell the user ``message`` privately, whatever state the interaction is in.

    After a public "thinking" defer, a follow-up would replace the thinking message and
    stay public; so that message is deleted first and the error sent as an ephemeral
    follow-up. A message longer than Discord allows is shortened. Never raises: a reply
    Discord refuses, or answers in a way that cannot be read, is logged.
    """
    message = clip(message, CONTENT_MAX)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True)
            return
        if interaction.extras.get("public_defer") and not interaction.extras.get("answered"):
            with contextlib.suppress(discord.NotFound):
                await interaction.delete_original_response()
            interaction.extras["public_defer"] = False
        await interaction.followup.send(message, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not send an error message to the user: %s", exc)
    except Exception as exc:  # e.g. an answer of the wrong shape: discord.py's KeyError
        log.warning("could not send an error message to the user (%s: %s)", type(exc).__name__, exc)
        log.debug("the error message's failure", exc_info=exc)


class ClassifierTree(app_commands.CommandTree):
    """The command tree with the bot's one error handler.

    A command that already showed the user why it failed sets ``extras["error_shown"]``:
    the error is still logged, but not repeated.
    """

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Not a check: names the request in every log record of its task."""
        command = interaction.command
        set_request_context(
            command=command.qualified_name if command else None,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            interaction_id=interaction.id,
        )
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        message = explain(error)
        name = interaction.command.name if interaction.command else "?"
        metrics = getattr(interaction.client, "metrics", None)
        if metrics is not None:
            qualified = interaction.command.qualified_name if interaction.command else None
            metrics.interaction(qualified, "error" if message is None else "refused")
        if message is None:
            original = getattr(error, "original", error)
            log.error("command /%s failed", name, exc_info=original)
            message = APOLOGY
        else:
            log.info("command /%s by %s: %s", name, interaction.user.id, message)
        if not interaction.extras.get("error_shown"):
            await reply_error(interaction, message)
