"""How a bulk teaching command answers in Discord: its progress in the one (deferred)
response, edited at most every ``PROGRESS_INTERVAL_S``, and a final report fitted to
Discord's 2,000 characters, with the whole report attached as a text file when it is
longer."""

from __future__ import annotations

import io
import logging
import time

import discord

from bot.cogs.teach._bulk import BulkReport
from bot.core.discord_limits import CONTENT_MAX, clip

log = logging.getLogger(__name__)

REPORT_FILE = "teach-report.txt"
MORE = "… and {n} more line(s): the whole report is attached ({file})."


class ProgressReply:
    """Edits the interaction's response with ``what`` and the count done so far."""

    def __init__(self, interaction: discord.Interaction, interval_s: float, what: str) -> None:
        self.interaction = interaction
        self.interval_s = interval_s
        self.what = what
        self.shown_at = 0.0
        self.edits = 0

    async def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.interval_s:
            return
        self.shown_at = now
        try:
            await self.interaction.edit_original_response(content=clip(text, CONTENT_MAX))
            self.edits += 1
        except discord.HTTPException as exc:  # progress is a courtesy; the report matters
            log.warning("could not show teaching progress: %s", exc)

    async def __call__(self, done: int, total: int) -> None:
        await self.show(f"{self.what}: {done} of {total} image(s) checked…")


def report_reply(report: BulkReport, head: str = "") -> tuple[str, list[discord.File]]:
    """The message (``head``, the summary, as many entry lines as fit) and, when some did
    not fit, the whole report as a text file."""
    lines = [e.line() for e in report.entries]
    top = "\n".join(p for p in (head, report.summary()) if p)
    if len(top) + sum(len(line) + 1 for line in lines) <= CONTENT_MAX:
        return "\n".join([top, *lines]), []
    shown: list[str] = []
    budget = CONTENT_MAX - len(top) - len(MORE.format(n=len(lines), file=REPORT_FILE)) - 2
    for line in lines:
        if len(line) + 1 > budget:
            break
        shown.append(line)
        budget -= len(line) + 1
    more = MORE.format(n=len(lines) - len(shown), file=REPORT_FILE)
    text = "\n".join([top, *shown, more])
    body = ((head + "\n") if head else "") + report.text()
    return clip(text, CONTENT_MAX), [discord.File(io.BytesIO(body.encode()), REPORT_FILE)]
