"""The components of the feedback loop: persistent buttons and selects whose custom ids
carry everything they need, so they keep working after a restart.

Each is a discord.py :class:`~discord.ui.DynamicItem` registered in ``setup_hook``
(:data:`DYNAMIC_ITEMS`); a press is parsed from the custom id and handed to
``bot.feedback_flow``. Custom ids (at most 100 characters):

- ``fb:r:<answer>`` / ``fb:w:<answer>``: "Right" / "Wrong..." under an answer;
- ``lp:<target>:<page>``: the label select of a picker (25 labels a page);
- ``pg:<target>:<page>``: a picker's previous/next page;
- ``nl:<target>``: "Something else..." (a modal for a new label, custom id ``ml:<target>``);
- ``rv:a|x|l:<item>``: /review's Approve, Reject, Relabel.

A picker's ``<target>`` says what the label is for: ``a<answer id>`` (a correction),
``m<channel id>-<message id>`` ("Teach as..." on a message), ``r<item id>`` (relabelling
a review item). Ids are looked up in the interacting server's scope only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord

LABELS_PER_PAGE = 25
TARGET = r"(?P<target>a\d+|m\d+-\d+|r\d+)"
NEW_LABEL_MODAL = re.compile(r"ml:" + TARGET)
FEEDBACK_ROWS = 5  # Discord's action rows per message


async def _run(interaction: discord.Interaction, action: str, **kw: Any) -> None:
    from bot.feedback_flow import handle  # the flows import this module's builders

    await handle(interaction, action, **kw)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"fb:(?P<verb>[rw]):(?P<answer>\d+)"
):
    def __init__(self, verb: str, answer_id: int, label: str | None = None) -> None:
        right = verb == "r"
        super().__init__(
            discord.ui.Button(
                label=label or ("Right" if right else "Wrong..."),
                style=discord.ButtonStyle.success if right else discord.ButtonStyle.secondary,
                custom_id=f"fb:{verb}:{answer_id}",
            )
        )
        self.verb, self.answer_id = verb, answer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VoteButton:
        return cls(match["verb"], int(match["answer"]), getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _run(interaction, "vote", verb=self.verb, answer_id=self.answer_id)


class LabelSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"lp:" + TARGET + r":(?P<page>\d+)"
):
    def __init__(self, target: str, page: int, labels: Sequence[str] = ()) -> None:
        options = [discord.SelectOption(label=lb, value=lb) for lb in labels] or [
            discord.SelectOption(label="-", value="-")
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=f"lp:{target}:{page}",
                placeholder="Pick the right label",
                options=options,
            )
        )
        self.target, self.page = target, page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> LabelSelect:
        return cls(match["target"], int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        values = list((interaction.data or {}).get("values") or [])  # type: ignore[union-attr]
        await _run(interaction, "label", target=self.target, raw=values[0] if values else "")


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pg:" + TARGET + r":(?P<page>\d+)"
):
    def __init__(self, target: str, page: int, label: str = "Next", disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"pg:{target}:{page}",
                disabled=disabled,
            )
        )
        self.target, self.page = target, page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> PageButton:
        return cls(match["target"], int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _run(interaction, "page", target=self.target, page=self.page)


class NewLabelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"nl:" + TARGET):
    def __init__(self, target: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Something else...",
                style=discord.ButtonStyle.primary,
                custom_id=f"nl:{target}",
            )
        )
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> NewLabelButton:
        return cls(match["target"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await _run(interaction, "new_label", target=self.target)


REVIEW_LABELS = {"a": "Approve", "x": "Reject", "l": "Relabel"}
REVIEW_STYLES = {
    "a": discord.ButtonStyle.success,
    "x": discord.ButtonStyle.danger,
    "l": discord.ButtonStyle.secondary,
}


class ReviewButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"rv:(?P<verb>[axl]):(?P<item>\d+)"
):
    def __init__(self, verb: str, item_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=REVIEW_LABELS[verb],
                style=REVIEW_STYLES[verb],
                custom_id=f"rv:{verb}:{item_id}",
            )
        )
        self.verb, self.item_id = verb, item_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ReviewButton:
        return cls(match["verb"], int(match["item"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _run(interaction, "review", verb=self.verb, item_id=self.item_id)


DYNAMIC_ITEMS = (VoteButton, LabelSelect, PageButton, NewLabelButton, ReviewButton)


# --- builders ---------------------------------------------------------------------------
def feedback_view(answer_ids: Sequence[int | None]) -> discord.ui.View | None:
    """ "Right" / "Wrong..." for each answered image (the first five: Discord's rows)."""
    numbered = len(answer_ids) > 1
    view = discord.ui.View(timeout=None)
    rows = 0
    for i, answer_id in enumerate(answer_ids):
        if answer_id is None or rows == FEEDBACK_ROWS:
            continue
        prefix = f"#{i + 1} " if numbered else ""
        view.add_item(_in_row(VoteButton("r", answer_id, f"{prefix}Right"), rows))
        view.add_item(_in_row(VoteButton("w", answer_id, f"{prefix}Wrong..."), rows))
        rows += 1
    return view if rows else None


def _in_row(item: discord.ui.Item[Any], row: int) -> discord.ui.Item[Any]:
    item.row = row
    return item


def page_count(labels: Sequence[str]) -> int:
    return max(1, -(-len(labels) // LABELS_PER_PAGE))


def label_picker(target: str, labels: Sequence[str], page: int) -> discord.ui.View:
    """A select of ``labels`` (one page of 25), page buttons when there are more, and
    "Something else..." for a label not in the list."""
    pages = page_count(labels)
    page = min(max(page, 0), pages - 1)
    view = discord.ui.View(timeout=None)
    shown = labels[page * LABELS_PER_PAGE : (page + 1) * LABELS_PER_PAGE]
    if shown:
        view.add_item(_in_row(LabelSelect(target, page, shown), 0))
    if pages > 1:
        view.add_item(_in_row(PageButton(target, max(page - 1, 0), "Previous", page == 0), 1))
        view.add_item(_in_row(PageButton(target, page + 1, "Next", page + 1 >= pages), 1))
    view.add_item(_in_row(NewLabelButton(target), 1))
    return view


def picker_text(what: str, labels: Sequence[str], page: int) -> str:
    pages = page_count(labels)
    where = f" (page {page + 1} of {pages})" if pages > 1 else ""
    return f"{what}\nPick the right label{where}, or **Something else...** to type a new one."


def new_label_modal(target: str) -> discord.ui.Modal:
    """The modal for a label that is not in the list. It is answered by the bot's
    ``on_interaction`` from its custom id (``ml:<target>``), not by this object, so that
    a modal opened before a restart is still handled: the object is stopped before it is
    sent, which keeps discord.py from waiting for it."""
    modal = discord.ui.Modal(title="Something else", custom_id=f"ml:{target}", timeout=None)
    modal.add_item(
        discord.ui.TextInput(
            label="Label",
            custom_id="label",
            placeholder="lowercase letters, digits, _ or -",
            min_length=1,
            max_length=32,
        )
    )
    modal.stop()
    return modal


def review_view(item_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for verb in ("a", "x", "l"):
        view.add_item(ReviewButton(verb, item_id))
    return view
