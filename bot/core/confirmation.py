"""What every "are you sure?" view shares: how long it waits, and that only the
administrator who asked may answer it."""

from __future__ import annotations

import discord

CONFIRM_TIMEOUT_S = 60.0


async def only_the_asker(interaction: discord.Interaction, user_id: int) -> bool:
    """A confirmation view's check: only the administrator who asked may press it."""
    if interaction.user.id != user_id:
        await interaction.response.send_message(
            "Only the administrator who asked can confirm this.", ephemeral=True
        )
        return False
    return True
