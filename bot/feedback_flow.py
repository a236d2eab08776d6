"""What the feedback components do: votes, corrections, "Teach as..." and /review's
decisions. Everything is looked up in the interacting server's scope, so an id of another
server's answer or review item finds nothing.

A correction by an admin or a trainer is taught at once (``bot.teach_images``); anyone
else's goes to the server's review queue with the kept image. Votes: one per member and
answer, a new vote replaces the earlier one (the reply says so). Components whose answer
has expired, was forgotten, or whose model was replaced since are retired: their buttons
are removed and the member is told why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.db import AnswerRecord, ScopedData, StoreWriteError
from bot.download import looks_like_image
from bot.embeds import percent
from bot.errors import APOLOGY, UserError, explain, reply_error
from bot.feedback_ui import (
    label_picker,
    new_label_modal,
    picker_text,
)
from bot.teach_images import download_all, teach_images, teach_report
from bot.teaching import image_extension, normalize_label
from bot.tenancy import in_server, labels_of
from bot.trainers import can_train, require_trainer
from golem_backend import UNKNOWN

if TYPE_CHECKING:
    from bot.classifying import ImageAnswer
    from bot.client import ClassifierBot

log = logging.getLogger(__name__)

MAX_TEACH_IMAGES = 10
GONE = (
    "This answer no longer takes feedback: it is older than {hours:g} hours, or its image "
    "was forgotten. Classify the image again to give feedback."
)
REPLACED = (
    "The model that gave this answer has been retrained or replaced since, so feedback on "
    "it no longer applies. Classify the image again to give feedback."
)


# --- answers get their buttons --------------------------------------------------------
async def open_answers(
    bot: ClassifierBot,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    answers: list[ImageAnswer],
) -> discord.ui.View | None:
    """Record a server's answered images and return their "Right"/"Wrong..." buttons.

    Outside servers (DMs, user installs) there is no server model to teach: no buttons.
    """
    if guild_id is None:
        return None
    from bot.feedback_ui import feedback_view

    scope = bot.store.guild(guild_id)
    ids: list[int | None] = []
    for a in answers:
        if a.prediction is None or a.data is None:
            ids.append(None)
            continue
        try:
            extension: str | None = image_extension(a.data)
        except UserError:
            extension = None
        try:
            ids.append(
                await scope.record_answer(
                    channel_id=channel_id,
                    user_id=user_id,
                    model_id=a.prediction.model_id or "",
                    label=a.prediction.label,
                    confidence=a.prediction.confidence,
                    data=a.data,
                    extension=extension,
                )
            )
        except StoreWriteError:
            ids.append(None)  # the answer is sent without buttons
    return feedback_view(ids)


# --- dispatch ---------------------------------------------------------------------------
async def handle(interaction: discord.Interaction, action: str, **kw: Any) -> None:
    """Run one component action; any error becomes a private message to the member."""
    bot: ClassifierBot = interaction.client  # type: ignore[assignment]
    try:
        if not in_server(interaction):
            raise UserError("Feedback only works in a server where the bot is installed.")
        await actions()[action](bot, interaction, **kw)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            log.error("feedback action %s failed", action, exc_info=exc)
            message = APOLOGY
        else:
            log.info("feedback action %s by %s: %s", action, interaction.user.id, message)
        await reply_error(interaction, message)


def scope_for(bot: ClassifierBot, interaction: discord.Interaction) -> ScopedData:
    assert interaction.guild_id is not None
    return bot.store.guild(interaction.guild_id)


async def server_labels(bot: ClassifierBot, scope: ScopedData) -> list[str]:
    """The labels of the server's model and of its taught images, sorted."""
    model_labels, _ = await labels_of(bot, scope)
    taught = await scope.label_counts()
    return sorted((set(model_labels) | set(taught)) - {UNKNOWN})


async def current_model_id(bot: ClassifierBot, scope: ScopedData) -> str | None:
    record = await scope.current_model()
    return record.model_id if record else (await bot.backend.status()).model_id


async def retire(interaction: discord.Interaction, text: str) -> None:
    """Remove the components of the message pressed on, and say why."""
    message = interaction.message
    if message is not None and message.flags.ephemeral:
        await interaction.response.edit_message(content=text, view=None)
        return
    if message is not None:
        await interaction.response.edit_message(view=None)
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def open_answer(
    bot: ClassifierBot, interaction: discord.Interaction, answer_id: int
) -> AnswerRecord | None:
    """The answer if it still takes feedback; otherwise its components are retired."""
    scope = scope_for(bot, interaction)
    answer = await scope.answer(answer_id)
    if answer is None:
        await retire(interaction, GONE.format(hours=bot.store.quotas.feedback_hours))
        return None
    if answer.model_id != await current_model_id(bot, scope):
        await retire(interaction, REPLACED)
        return None
    return answer


# --- votes and corrections --------------------------------------------------------------
async def vote(
    bot: ClassifierBot, interaction: discord.Interaction, verb: str, answer_id: int
) -> None:
    answer = await open_answer(bot, interaction, answer_id)
    if answer is None:
        return
    scope = scope_for(bot, interaction)
    if verb == "r":
        tally = await scope.vote(answer_id, interaction.user.id, right=True)
        if tally is None:  # forgotten meanwhile
            await retire(interaction, GONE.format(hours=bot.store.quotas.feedback_hours))
            return
        replaced = " (it replaces your earlier vote)" if tally.replaced else ""
        await interaction.response.send_message(
            f"Thanks: your vote **right** is counted{replaced}. This answer has "
            f"{tally.right} right and {tally.wrong} wrong vote(s).",
            ephemeral=True,
        )
        return
    labels = await server_labels(bot, scope)
    what = f"The model said **{answer.label}** ({percent(answer.confidence)})."
    await interaction.response.send_message(
        picker_text(what, labels, 0), view=label_picker(f"a{answer_id}", labels, 0), ephemeral=True
    )


async def correct(
    bot: ClassifierBot, interaction: discord.Interaction, answer_id: int, label: str
) -> None:
    answer = await open_answer(bot, interaction, answer_id)
    if answer is None:
        return
    scope = scope_for(bot, interaction)
    user = interaction.user
    right = label == answer.label
    tally = await scope.vote(answer_id, user.id, right=right, label=None if right else label)
    if tally is None:
        await retire(interaction, GONE.format(hours=bot.store.quotas.feedback_hours))
        return
    if right:
        await interaction.response.edit_message(
            content=f"The model said **{label}** too: counted as a right vote.", view=None
        )
        return
    data = await read_kept(answer.image)
    if data is None:
        text = (
            f"Your vote (**{label}**) is counted, but this image is no longer kept (only the "
            "newest answers' images are), so it can't be taught."
        )
        await interaction.response.edit_message(content=text, view=None)
        return
    await interaction.response.defer()  # deferred update: teaching checks the image first
    if await can_train(bot, interaction):
        [result] = await teach_images(
            bot, scope, label, [(f"answer {answer_id}", data)], user_id=user.id, user_name=str(user)
        )
        text = (
            f"Thanks! The image is {result.line}; it's used by the next /retrain."
            if result.learned or result.duplicate
            else f"I couldn't teach it: {result.line}"
        )
    else:
        created, waiting = await scope.enqueue_review(
            answer, label, user_id=user.id, user_name=str(user)
        )
        text = (
            f"Thanks! Your correction (**{label}**) is in this server's review queue "
            f"({waiting} waiting): an admin or trainer will look at it."
            if created
            else f"This correction (**{label}**) is already in the review queue."
        )
    await interaction.edit_original_response(content=text, view=None)


async def read_kept(path: Any) -> bytes | None:
    if path is None:
        return None
    try:
        return await asyncio.to_thread(path.read_bytes)
    except OSError:
        return None


# --- pickers ----------------------------------------------------------------------------
async def choose_label(
    bot: ClassifierBot, interaction: discord.Interaction, target: str, raw: str
) -> None:
    label = normalize_label(raw)
    kind, rest = target[0], target[1:]
    if kind == "a":
        await correct(bot, interaction, int(rest), label)
    elif kind == "m":
        channel_id, message_id = (int(x) for x in rest.split("-"))
        await teach_message(bot, interaction, channel_id, message_id, label)
    else:
        from bot.review_flow import decide

        await decide(bot, interaction, int(rest), label)


async def page(
    bot: ClassifierBot, interaction: discord.Interaction, target: str, page: int
) -> None:
    if target[0] != "a":
        await require_trainer(bot, interaction)
    labels = await server_labels(bot, scope_for(bot, interaction))
    first_line = ((interaction.message.content if interaction.message else "") or "").split("\n")[0]
    await interaction.response.edit_message(
        content=picker_text(first_line, labels, page), view=label_picker(target, labels, page)
    )


async def new_label(bot: ClassifierBot, interaction: discord.Interaction, target: str) -> None:
    if target[0] != "a":
        await require_trainer(bot, interaction)
    await interaction.response.send_modal(new_label_modal(target))


def modal_value(data: dict[str, Any]) -> str:
    """The "label" text input's value in a modal submit (in rows or labels)."""
    for row in data.get("components") or []:
        items = row.get("components") or ([row["component"]] if "component" in row else [])
        for item in items:
            if item.get("custom_id") == "label":
                return str(item.get("value") or "")
    return ""


# --- "Teach as..." ----------------------------------------------------------------------
async def teach_message(
    bot: ClassifierBot,
    interaction: discord.Interaction,
    channel_id: int,
    message_id: int,
    label: str,
) -> None:
    await require_trainer(bot, interaction)
    guild = interaction.guild
    channel = guild.get_channel_or_thread(channel_id) if guild else None
    if channel is None or not isinstance(channel, discord.abc.Messageable):
        raise UserError("That message is not in a channel of this server I can see.")
    await interaction.response.defer()
    try:
        message = await channel.fetch_message(message_id)
    except discord.NotFound:
        raise UserError("That message was deleted, so there is nothing to teach.") from None
    except discord.Forbidden:
        raise UserError("I can't read that channel's messages any more.") from None
    images = [a for a in message.attachments if looks_like_image(a)][:MAX_TEACH_IMAGES]
    if not images:
        raise UserError("That message has no images I can see.")
    scope = scope_for(bot, interaction)
    user = interaction.user
    results = await teach_images(
        bot, scope, label, await download_all(bot, images), user_id=user.id, user_name=str(user)
    )
    report = await teach_report(bot, scope, label, results)
    await interaction.edit_original_response(content=report, view=None)


def actions() -> dict[str, Callable[..., Awaitable[None]]]:
    from bot.review_flow import review  # it uses this module's helpers

    return {
        "vote": vote,
        "label": choose_label,
        "modal": choose_label,
        "page": page,
        "new_label": new_label,
        "review": review,
    }
