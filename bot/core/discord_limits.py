"""Discord's size limits on messages and embeds, and fitting what the bot sends into them.

Discord refuses a message that breaks any of these (400, code 50035), so the bot would
answer with an apology instead of the result; everything is condensed before sending.
"""

from __future__ import annotations

import discord

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000  # title + description + field names/values + footer + author, all embeds
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with "…" when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS if limit > 0 else ""


def fit_embeds(embeds: list[discord.Embed]) -> list[discord.Embed]:
    """At most 10 embeds whose parts and total size are within Discord's limits.

    Each embed gets an equal share of the 6,000-character total; an embed over its share
    first loses its lowest score lines, then long names and texts are shortened.
    """
    embeds = embeds[:EMBEDS_MAX]
    if not embeds:
        return embeds
    budget = EMBED_TOTAL_MAX // len(embeds)
    return [fit_embed(e, budget) for e in embeds]


def fit_embed(embed: discord.Embed, budget: int = EMBED_TOTAL_MAX) -> discord.Embed:
    """Shrink ``embed`` in place to Discord's per-part limits and ``budget`` characters."""
    _apply_part_limits(embed)
    # 1. drop trailing lines of multi-line fields (the lowest scores), keeping one
    while len(embed) > budget:
        multi = [i for i, f in enumerate(embed.fields) if "\n" in (f.value or "")]
        if not multi:
            break
        i = multi[-1]
        field = embed.fields[i]
        value = (field.value or "").rsplit("\n", 1)[0]
        embed.set_field_at(i, name=field.name or "", value=value, inline=bool(field.inline))
    # 2. then shorten texts, the least useful first
    for shorten in (_author, _description, _field_values, _title, _footer):
        excess = len(embed) - budget
        if excess <= 0:
            break
        shorten(embed, excess)
    return embed


def _apply_part_limits(embed: discord.Embed) -> None:
    if embed.title:
        embed.title = clip(embed.title, TITLE_MAX)
    if embed.description:
        embed.description = clip(embed.description, DESCRIPTION_MAX)
    for i in range(len(embed.fields) - 1, FIELDS_MAX - 1, -1):
        embed.remove_field(i)
    for i, f in enumerate(embed.fields):
        embed.set_field_at(
            i,
            name=clip(f.name or "", FIELD_NAME_MAX),
            value=clip(f.value or "", FIELD_VALUE_MAX),
            inline=bool(f.inline),
        )
    if embed.author.name:
        _author(embed, len(embed.author.name) - AUTHOR_MAX)
    if embed.footer.text:
        _footer(embed, len(embed.footer.text) - FOOTER_MAX)


def _keep(text: str, excess: int, floor: int) -> str:
    """``text`` shortened by ``excess`` characters, but not below ``floor`` (if longer)."""
    if excess <= 0:
        return text
    return clip(text, max(len(text) - excess, min(floor, len(text))))


def _author(embed: discord.Embed, excess: int) -> None:
    name = embed.author.name or ""
    if name and excess > 0:
        embed.set_author(
            name=_keep(name, excess, 24), url=embed.author.url, icon_url=embed.author.icon_url
        )


def _description(embed: discord.Embed, excess: int) -> None:
    if embed.description:
        embed.description = _keep(embed.description, excess, 40)


def _field_values(embed: discord.Embed, excess: int) -> None:
    for i in range(len(embed.fields) - 1, -1, -1):
        if excess <= 0:
            return
        f = embed.fields[i]
        value = f.value or ""
        short = _keep(value, excess, 20)
        excess -= len(value) - len(short)
        embed.set_field_at(i, name=f.name or "", value=short, inline=bool(f.inline))


def _title(embed: discord.Embed, excess: int) -> None:
    if embed.title:
        embed.title = _keep(embed.title, excess, 24)


def _footer(embed: discord.Embed, excess: int) -> None:
    text = embed.footer.text or ""
    if text and excess > 0:
        embed.set_footer(text=_keep(text, excess, 0) or None, icon_url=embed.footer.icon_url)
