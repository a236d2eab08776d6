"""The label picker: a select of the server's labels (25 a page), previous/next page
buttons, and "Something else..." for a new label (a modal). "Teach as...", a correction
of an answer and /review's Relabel all pick their label with it.

Its components are persistent discord.py :class:`~discord.ui.DynamicItem` objects whose
custom ids (at most 100 characters) carry everything they need, so they keep working
after a restart:

- ``lp:<target>:<page>``: the label select of a page;
- ``pg:<target>:<page>``: a previous/next page button;
- ``nl:<target>``: "Something else..." (a modal, custom id ``ml:<target>``, answered from
  that custom id by ``TeachCog.on_interaction``).

A ``<target>`` says what the label is for: a kind letter and ids. ``m<channel
id>-<message id>`` ("Teach as..." on a message) is this feature's; the feedback feature
adds ``a<answer id>`` (a correction) and ``r<item id>`` (relabelling a review item) with
:func:`add_label_target`. Ids are looked up in the interacting server's scope only; the
digits are bounded by :mod:`bot.core.custom_ids` and each kind's ``pick`` range-checks
its ids (a forged one gets the kind's "gone" message).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.cogs.teach._labels import normalize_label, server_labels
from bot.core.components import run_component_action
from bot.core.custom_ids import DIGITS, page_number
from bot.core.errors import UserError
from bot.core.permissions import require_trainer
from bot.core.tenancy import server_scope

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

LABELS_PER_PAGE = 25
TARGET = rf"(?P<target>a{DIGITS}|m{DIGITS}-{DIGITS}|r{DIGITS})"
NEW_LABEL_MODAL = re.compile(r"ml:" + TARGET)


@dataclass(frozen=True, slots=True)
class LabelTarget:
    """What the label picked for one kind of target is for.

    ``pick(bot, interaction, ids, label)`` gets the target without its kind letter and the
    label in canonical form, and answers the interaction. Turning pages and typing a new
    label are for admins and trainers only unless ``members_may_pick``.
    """

    pick: Callable[[ClassifierBot, discord.Interaction, str, str], Awaitable[None]]
    members_may_pick: bool = False


_targets: weakref.WeakKeyDictionary[discord.Client, dict[str, LabelTarget]] = (
    weakref.WeakKeyDictionary()
)


def add_label_target(bot: discord.Client, kind: str, target: LabelTarget) -> None:
    """Handle the picks of targets of ``kind`` (a letter of :data:`TARGET`) for ``bot``."""
    _targets.setdefault(bot, {})[kind] = target


def remove_label_target(bot: discord.Client, kind: str) -> None:
    _targets.get(bot, {}).pop(kind, None)


def label_target(bot: discord.Client, target: str) -> LabelTarget:
    found = _targets.get(bot, {}).get(target[:1])
    if found is None:
        raise UserError("This label picker is not in use any more.")
    return found


class LabelSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"lp:" + TARGET + r":(?P<page>" + DIGITS + ")",
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
        return cls(match["target"], page_number(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        values = list((interaction.data or {}).get("values") or [])  # type: ignore[union-attr]
        await run_component_action(
            interaction, "label", choose_label, target=self.target, raw=values[0] if values else ""
        )


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pg:" + TARGET + r":(?P<page>" + DIGITS + ")",
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
        return cls(match["target"], page_number(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_component_action(
            interaction, "page", turn_page, target=self.target, page=self.page
        )


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
        await run_component_action(interaction, "new_label", ask_new_label, target=self.target)


PICKER_ITEMS = (LabelSelect, PageButton, NewLabelButton)


# --- builders ---------------------------------------------------------------------------
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


def _in_row(item: discord.ui.Item[Any], row: int) -> discord.ui.Item[Any]:
    item.row = row
    return item


def picker_text(what: str, labels: Sequence[str], page: int) -> str:
    pages = page_count(labels)
    where = f" (page {page + 1} of {pages})" if pages > 1 else ""
    return f"{what}\nPick the right label{where}, or **Something else...** to type a new one."


def new_label_modal(target: str) -> discord.ui.Modal:
    """The modal for a label that is not in the list. It is answered by
    ``TeachCog.on_interaction`` from its custom id (``ml:<target>``), not by this object,
    so that a modal opened before a restart is still handled: the object is stopped before
    it is sent, which keeps discord.py from waiting for it."""
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


def modal_value(data: dict[str, Any]) -> str:
    """The "label" text input's value in a modal submit (in rows or labels)."""
    for row in data.get("components") or []:
        items = row.get("components") or ([row["component"]] if "component" in row else [])
        for item in items:
            if item.get("custom_id") == "label":
                return str(item.get("value") or "")
    return ""


# --- actions ------------------------------------------------------------------------------
async def choose_label(
    bot: ClassifierBot, interaction: discord.Interaction, target: str, raw: str
) -> None:
    """A label was picked (or typed in the modal) for ``target``."""
    label = normalize_label(raw)
    await label_target(bot, target).pick(bot, interaction, target[1:], label)


async def turn_page(
    bot: ClassifierBot, interaction: discord.Interaction, target: str, page: int
) -> None:
    if not label_target(bot, target).members_may_pick:
        await require_trainer(bot, interaction)
    labels = await server_labels(bot, server_scope(bot, interaction))
    first_line = ((interaction.message.content if interaction.message else "") or "").split("\n")[0]
    await interaction.response.edit_message(
        content=picker_text(first_line, labels, page), view=label_picker(target, labels, page)
    )


async def ask_new_label(bot: ClassifierBot, interaction: discord.Interaction, target: str) -> None:
    if not label_target(bot, target).members_may_pick:
        await require_trainer(bot, interaction)
    await interaction.response.send_modal(new_label_modal(target))
