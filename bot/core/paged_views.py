"""Pages a member turns: a Previous / Next view over embeds, and packing lines into pages
that fit Discord's limits."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.core.discord_limits import DESCRIPTION_MAX, clip


def text_pages(lines: Sequence[str], max_chars: int = DESCRIPTION_MAX) -> list[str]:
    """``lines`` packed in order into as few texts of at most ``max_chars`` as they fit
    (a line is never split; one longer than ``max_chars`` is clipped). At least one."""
    pages: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, max_chars)
        joined = f"{current}\n{line}" if current else line
        if len(joined) > max_chars:
            pages.append(current)
            joined = line
        current = joined
    return [*pages, current]


class PageView(discord.ui.View):
    """Previous / Next over ``pages``; only the member who asked may turn them."""

    def __init__(
        self,
        pages: list[discord.Embed],
        user_id: int,
        *,
        command: str,
        timeout_s: float = 300,
    ) -> None:
        super().__init__(timeout=timeout_s)
        self.pages, self.user_id, self.index, self.command = pages, user_id, 0, command
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index >= len(self.pages) - 1

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.user_id:
            await interaction.response.send_message(
                f"Run {self.command} yourself to turn the pages.", ephemeral=True
            )
            return False
        return True

    async def _show(self, interaction: discord.Interaction, step: int) -> None:
        self.index = max(0, min(len(self.pages) - 1, self.index + step))
        self._sync()
        await interaction.response.edit_message(embed=self.pages[self.index], view=self)

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, _b: discord.ui.Button) -> None:
        await self._show(interaction, -1)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, _b: discord.ui.Button) -> None:
        await self._show(interaction, +1)
