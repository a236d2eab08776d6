"""The public message of a /retrain: progress while training, then the report (an embed
with the confusion matrix) or the failure.

It is the interaction's response while the interaction token is valid. Discord's tokens
expire 15 minutes after the command, so after ``INTERACTION_EDIT_WINDOW_S`` (or when an
edit fails because the token expired or the message is gone) the rest is posted as a
normal channel message, which later updates edit in turn.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from typing import Any

import discord

from bot.core.embeds import GREEN, bar, duration, percent
from bot.core.model_quality import add_quality_fields, quality_of
from golem_backend import TrainReport

log = logging.getLogger(__name__)

CONFUSION_FILE = "confusion.png"

#: How long the interaction's response is edited; tokens last 15 minutes from the
#: command, the margin covers the time before the command reached the bot.
INTERACTION_EDIT_WINDOW_S = 14 * 60.0

#: Discord's answers once the token expired, or when the message is gone.
_EXPIRED_CODES = frozenset({10008, 10015, 10062, 50027})


def token_expired(exc: discord.HTTPException) -> bool:
    return exc.status in (401, 404) or exc.code in _EXPIRED_CODES


class RetrainMessage:
    """One message shown to everyone in the channel, edited as the retrain goes."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.deadline = time.monotonic() + INTERACTION_EDIT_WINDOW_S
        self.channel_message: discord.Message | None = None
        self._lock = asyncio.Lock()  # progress and the final text never interleave

    async def show(
        self, content: str | None, *, embed: discord.Embed | None = None, png: bytes | None = None
    ) -> None:
        """Replace what the message shows; ``discord.HTTPException`` if that failed."""
        async with self._lock:
            if self.channel_message is None and time.monotonic() < self.deadline:
                try:
                    await self.interaction.edit_original_response(
                        content=content, embed=embed, attachments=_files(png)
                    )
                    return
                except discord.HTTPException as exc:
                    if not token_expired(exc):
                        raise
                    log.info("the /retrain response can no longer be edited (%s)", exc)
            await self._show_in_channel(content, embed, png)

    async def _show_in_channel(
        self, content: str | None, embed: discord.Embed | None, png: bytes | None
    ) -> None:
        files = _files(png)
        if self.channel_message is not None:
            await self.channel_message.edit(content=content, embed=embed, attachments=files)
            return
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise discord.ClientException("the /retrain channel cannot receive messages")
        kwargs: dict[str, Any] = {"content": content, "embed": embed}
        if files:
            kwargs["files"] = files
        self.channel_message = await channel.send(**kwargs)
        log.info("continuing the /retrain report in channel %s", channel.id)


def _files(png: bytes | None) -> list[discord.File]:
    """The confusion matrix as a fresh file (a ``discord.File`` is used up once sent)."""
    return [discord.File(io.BytesIO(png), CONFUSION_FILE)] if png else []


class ProgressMessage:
    """Shows training progress on a :class:`RetrainMessage`, at most every ``interval_s``.

    ``update`` is the backend's progress callback; it may be called from any thread.
    """

    def __init__(self, message: RetrainMessage, interval_s: float) -> None:
        self.message = message
        self.interval_s = interval_s
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.started = time.monotonic()
        self.latest: tuple[str, int, int] | None = None
        self.changed = asyncio.Event()
        self.edits = 0

    def update(self, stage: str, done: int, total: int) -> None:
        self.latest = (stage, done, total)
        if threading.get_ident() == self.loop_thread:
            self.changed.set()
        else:
            self.loop.call_soon_threadsafe(self.changed.set)

    async def run(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            if self.latest is not None:
                stage, done, total = self.latest
                text = progress_text(stage, done, total, time.monotonic() - self.started)
                try:
                    await self.message.show(text)
                    self.edits += 1
                except (discord.HTTPException, discord.ClientException) as exc:
                    log.warning("could not show training progress: %s", exc)
            await asyncio.sleep(self.interval_s)


def progress_text(stage: str, done: int, total: int, elapsed_s: float) -> str:
    if total > 0:
        frac = min(done / total, 1.0)
        return f"Retraining: {stage} `{bar(frac)}` {done}/{total} ({duration(elapsed_s)} elapsed)"
    return f"Retraining: {stage}… ({duration(elapsed_s)} elapsed)"


def report_embed(report: TrainReport, *, taught: int) -> discord.Embed:
    acc = "not measured"
    if report.accuracy is not None:
        acc = percent(report.accuracy)
        if report.accuracy_std is not None:
            acc += f" ± {report.accuracy_std * 100:.0f}"
    embed = discord.Embed(title="Retraining finished", colour=GREEN)
    embed.add_field(name="Accuracy (cross-validated)", value=acc)
    embed.add_field(name="Images", value=f"{report.n_images} ({taught} taught)")
    embed.add_field(name="Duration", value=duration(report.duration_s))
    quality = quality_of(report.extra.get("quality"))
    if quality is not None:
        add_quality_fields(embed, quality)
    embed.add_field(name="Model", value=report.model_id, inline=False)
    labels = ", ".join(report.labels) or "none"
    embed.add_field(name=f"Labels ({len(report.labels)})", value=labels[:1024], inline=False)
    if report.warnings:
        embed.add_field(name="Warnings", value="\n".join(report.warnings)[:1024], inline=False)
    if report.skipped:
        skipped = "\n".join(report.skipped[:10])
        more = f"\n… and {len(report.skipped) - 10} more" if len(report.skipped) > 10 else ""
        embed.add_field(
            name=f"Skipped files ({len(report.skipped)})",
            value=(skipped[:900] + more),
            inline=False,
        )
    if report.confusion_png:
        embed.set_image(url=f"attachment://{CONFUSION_FILE}")
    return embed
