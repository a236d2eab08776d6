"""How an answer looks: one embed per image (a label, its scores, or why it could not be
classified), fitted into Discord's limits; an answer below the scope's "not sure"
threshold says so instead of pretending."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.utils import escape_markdown

from bot.core.classifying import ImageAnswer
from bot.core.discord_limits import fit_embeds
from bot.core.embeds import GREEN, GREY, RED, bar, percent
from bot.db import ScopedData
from golem_backend import LabelScore, Prediction

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot


async def low_confidence_of(bot: ClassifierBot, scope: ScopedData) -> float:
    """The scope's "not sure" threshold: its own (``/settings``) or ``LOW_CONFIDENCE``."""
    if scope.scope_id == 0:
        return bot.settings.low_confidence
    own = (await scope.serving()).low_confidence
    return bot.settings.low_confidence if own is None else own


def answer_embeds(
    bot: ClassifierBot, answers: list[ImageAnswer], *, low_confidence: float | None = None
) -> list[discord.Embed]:
    """One embed per image, fitted together into Discord's size limits; an answer below
    ``low_confidence`` (default: ``LOW_CONFIDENCE``) says it is not sure."""
    if low_confidence is None:
        low_confidence = bot.settings.low_confidence
    embeds = []
    for a in answers:
        if a.prediction is not None:
            embeds.append(
                prediction_embed(
                    a.prediction,
                    filename=a.attachment.filename,
                    thumbnail_url=a.attachment.url,
                    low_confidence=low_confidence,
                )
            )
        else:
            embeds.append(error_embed(a.attachment.filename, a.error or "Not classified."))
    return fit_embeds(embeds)


def score_lines(scores: tuple[LabelScore, ...]) -> str:
    return "\n".join(
        f"`{bar(s.confidence)}` {percent(s.confidence):>4} {escape_markdown(s.label)}"
        for s in scores
    )


def is_unsure(prediction: Prediction, low_confidence: float) -> bool:
    return prediction.is_unknown or prediction.confidence < low_confidence


def prediction_embed(
    prediction: Prediction, *, filename: str, thumbnail_url: str | None, low_confidence: float
) -> discord.Embed:
    """The answer for one image; an unsure answer says so instead of pretending."""
    best = (
        prediction.top[0] if prediction.top else LabelScore(prediction.label, prediction.confidence)
    )
    if is_unsure(prediction, low_confidence):
        embed = discord.Embed(
            title=f"Not sure: closest is {best.label} ({percent(best.confidence)})",
            colour=GREY,
            description=(
                "This doesn't look like anything I was trained on."
                if prediction.is_unknown
                else "My confidence is low, so take this with a grain of salt."
            ),
        )
    else:
        embed = discord.Embed(
            title=f"{prediction.label} ({percent(prediction.confidence)})", colour=GREEN
        )
    if prediction.top:
        name = "Scores" if len(prediction.top) > 1 else "Score"
        embed.add_field(name=name, value=score_lines(prediction.top), inline=False)
    embed.set_author(name=filename[:256])
    if thumbnail_url:
        embed.set_thumbnail(url=thumbnail_url)
    embed.set_footer(text=f"model {prediction.model_id or '?'}")
    return embed


def error_embed(filename: str, message: str) -> discord.Embed:
    embed = discord.Embed(description=message[:4000], colour=RED)
    embed.set_author(name=filename[:256])
    return embed
