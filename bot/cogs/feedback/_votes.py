"""Votes and corrections: the "Right" / "Wrong..." buttons under an answer, what a press
does, and the answers that take them. Everything is looked up in the interacting server's
scope, so an id of another server's answer finds nothing.

A correction by an admin or a trainer is taught at once (``teach_images``); anyone else's
goes to the server's review queue with the kept image. Votes: one per member and answer, a
new vote replaces the earlier one (the reply says so). Components whose answer has
expired, was forgotten, or whose model was replaced since are retired: their buttons are
removed and the member is told why.

An answer remembers its channel and the image's author (who posted it: the member who
asked, or the author of the message classified): a member who cannot view the channel is
told the answer takes no feedback, and what a correction queues or teaches stays the
author's (``/forget mine``). Votes and corrections count towards a per-member cooldown
(``_cooldown.py``).

The buttons are persistent dynamic items (custom ids ``fb:r:<answer>`` / ``fb:w:<answer>``);
"Wrong..." opens the label picker (``bot.cogs.teach``) on the target ``a<answer id>``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.cogs.feedback._cooldown import count_feedback
from bot.cogs.teach import label_picker, picker_text, server_labels, teach_images
from bot.core.channel_access import can_view_channel
from bot.core.components import run_component_action
from bot.core.custom_ids import DIGITS, row_id
from bot.core.download import image_extension
from bot.core.embeds import percent
from bot.core.errors import UserError
from bot.core.permissions import can_train
from bot.core.tenancy import server_scope
from bot.db import AnswerRecord, QuotaExceeded, ScopedData, StoreWriteError

if TYPE_CHECKING:
    from bot.core.classifying import ImageAnswer
    from bot.core.client import ClassifierBot

FEEDBACK_ROWS = 5  # Discord's action rows per message
GONE = (
    "This answer no longer takes feedback: it is older than {hours:g} hours, or its image "
    "was forgotten. Classify the image again to give feedback."
)
REPLACED = (
    "The model that gave this answer has been retrained or replaced since, so feedback on "
    "it no longer applies. Classify the image again to give feedback."
)


# --- the buttons ------------------------------------------------------------------------
class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"fb:(?P<verb>[rw]):(?P<answer>" + DIGITS + ")",
):
    def __init__(self, verb: str, answer_id: int | None, label: str | None = None) -> None:
        """``answer_id`` ``None``: a custom id whose id names no answer (forged)."""
        right = verb == "r"
        super().__init__(
            discord.ui.Button(
                label=label or ("Right" if right else "Wrong..."),
                style=discord.ButtonStyle.success if right else discord.ButtonStyle.secondary,
                custom_id=f"fb:{verb}:{answer_id or 0}",
            )
        )
        self.verb, self.answer_id = verb, answer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VoteButton:
        return cls(match["verb"], row_id(match["answer"]), getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_component_action(
            interaction, "vote", vote, verb=self.verb, answer_id=self.answer_id
        )


def feedback_view(answer_ids: Sequence[int | None]) -> discord.ui.View | None:
    """ "Right" / "Wrong..." for each answered image (the first five: Discord's rows)."""
    numbered = len(answer_ids) > 1
    view = discord.ui.View(timeout=None)
    rows = 0
    for i, answer_id in enumerate(answer_ids):
        if answer_id is None or rows == FEEDBACK_ROWS:
            continue
        prefix = f"#{i + 1} " if numbered else ""
        for button in (
            VoteButton("r", answer_id, f"{prefix}Right"),
            VoteButton("w", answer_id, f"{prefix}Wrong..."),
        ):
            button.row = rows
            view.add_item(button)
        rows += 1
    return view if rows else None


# --- answers get their buttons --------------------------------------------------------
async def open_answers(
    bot: ClassifierBot,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    answers: list[ImageAnswer],
    *,
    author_id: int,
) -> discord.ui.View | None:
    """Record a server's answered images and return their "Right"/"Wrong..." buttons.
    ``user_id`` asked; ``author_id`` posted the images (the same member for /classify,
    the message's author for "Classify image" and auto-replies).

    Outside servers (DMs, user installs) there is no server model to teach: no buttons.
    """
    if guild_id is None:
        return None
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
                    author_id=author_id,
                )
            )
        except StoreWriteError:
            ids.append(None)  # the answer is sent without buttons
    return feedback_view(ids)


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
    bot: ClassifierBot, interaction: discord.Interaction, answer_id: int | None
) -> AnswerRecord | None:
    """The answer if it still takes feedback; otherwise its components are retired. An
    id that names no answer of this server (``None``: not an id at all) and an answer
    from a channel the member cannot view are "gone" alike (nothing tells them apart)."""
    scope = server_scope(bot, interaction)
    answer = await scope.answer(answer_id) if answer_id is not None else None
    if answer is None or not can_view_channel(interaction, answer.channel_id):
        await retire(interaction, GONE.format(hours=bot.store.quotas.feedback_hours))
        return None
    if answer.model_id != await current_model_id(bot, scope):
        await retire(interaction, REPLACED)
        return None
    return answer


# --- votes and corrections --------------------------------------------------------------
async def vote(
    bot: ClassifierBot, interaction: discord.Interaction, verb: str, answer_id: int | None
) -> None:
    answer = await open_answer(bot, interaction, answer_id)
    if answer is None:
        return
    scope = server_scope(bot, interaction)
    if verb == "r":
        count_feedback(bot, interaction.user.id)
        tally = await scope.vote(answer.answer_id, interaction.user.id, right=True)
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
        picker_text(what, labels, 0),
        view=label_picker(f"a{answer.answer_id}", labels, 0),
        ephemeral=True,
    )


async def correct(
    bot: ClassifierBot, interaction: discord.Interaction, answer_id: int | None, label: str
) -> None:
    answer = await open_answer(bot, interaction, answer_id)
    if answer is None:
        return
    scope = server_scope(bot, interaction)
    user = interaction.user
    count_feedback(bot, user.id)
    right = label == answer.label
    tally = await scope.vote(answer.answer_id, user.id, right=right, label=None if right else label)
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
            bot,
            scope,
            label,
            [(f"answer {answer.answer_id}", data)],
            path="correction",
            member_id=user.id,
            user_id=user.id,
            user_name=str(user),
            author_id=answer.author_id,
        )
        text = (
            f"Thanks! The image is {result.line}; it's used by the next /retrain."
            if result.learned or result.duplicate
            else f"I couldn't teach it: {result.line}"
        )
    else:
        try:
            created, waiting = await scope.enqueue_review(
                answer, label, user_id=user.id, user_name=str(user)
            )
        except QuotaExceeded as exc:  # the member's share of the queue, or the server's
            text = f"Your vote (**{label}**) is counted, but it was not queued: {exc.message}"
            await interaction.edit_original_response(content=text, view=None)
            return
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


async def correct_picked(
    bot: ClassifierBot, interaction: discord.Interaction, answer_id: str, label: str
) -> None:
    """The label picker's answer for an ``a<answer id>`` target (after "Wrong...")."""
    await correct(bot, interaction, row_id(answer_id), label)
