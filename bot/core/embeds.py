"""What every embed the bot sends shares: its colours and how it writes numbers."""

from __future__ import annotations

import datetime as dt

import discord

GREEN = discord.Colour(0x2ECC71)
GREY = discord.Colour(0x95A5A6)
RED = discord.Colour(0xE74C3C)
BLUE = discord.Colour(0x3498DB)


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def bar(value: float, width: int = 10) -> str:
    """``███░░░░░░░`` for 0.3: a confidence that reads at a glance."""
    filled = max(0, min(width, round(value * width)))
    return "█" * filled + "░" * (width - filled)


def duration(seconds: float) -> str:
    """``0:01:05`` for 65.4 seconds."""
    return str(dt.timedelta(seconds=int(seconds)))
