"""/labels as pages: each label's taught images and its recall from the last retrain.

One embed per page, :data:`LABELS_PER_PAGE` labels each, well within Discord's limits
(4,096 characters of description, 6,000 per message) for any number of labels; a page
view (``bot.core.paged_views.PageView``) turns the pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import discord
from discord.utils import escape_markdown

from bot.core.discord_limits import DESCRIPTION_MAX, clip
from bot.core.embeds import BLUE, percent

LABELS_PER_PAGE = 20
#: Below these a label is marked as needing more examples.
FEW_IMAGES = 5
LOW_RECALL = 0.7


@dataclass(frozen=True, slots=True)
class LabelLine:
    label: str
    taught: int
    recall: float | None  # cross-validated, from the last retrain; None: not measured
    in_model: bool

    @property
    def needs_examples(self) -> bool:
        low = self.recall is not None and self.recall < LOW_RECALL
        return low or (0 < self.taught < FEW_IMAGES)

    def text(self) -> str:
        recall = "recall —" if self.recall is None else f"recall {percent(self.recall)}"
        parts = [f"{self.taught} taught", recall]
        if not self.in_model:
            parts.append("not in the model yet")
        mark = "⚠️ " if self.needs_examples else ""
        return f"{mark}**{escape_markdown(self.label)}**: {' · '.join(parts)}"


def label_lines(
    model_labels: Sequence[str], taught: Mapping[str, int], recall: Mapping[str, float]
) -> list[LabelLine]:
    labels = sorted(set(model_labels) | set(taught))
    known = set(model_labels)
    return [
        LabelLine(label, taught.get(label, 0), _recall(recall.get(label)), label in known)
        for label in labels
    ]


def _recall(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def label_pages(lines: list[LabelLine], model_id: str | None) -> list[discord.Embed]:
    """The pages of /labels; at least one."""
    chunks = [lines[i : i + LABELS_PER_PAGE] for i in range(0, len(lines), LABELS_PER_PAGE)]
    chunks = chunks or [[]]
    pages = []
    needing = sum(line.needs_examples for line in lines)
    for n, chunk in enumerate(chunks, 1):
        text = "\n".join(line.text() for line in chunk) or "No labels yet."
        embed = discord.Embed(
            title=f"{len(lines)} labels", description=clip(text, DESCRIPTION_MAX), colour=BLUE
        )
        if needing:
            embed.add_field(
                name="Needs more examples",
                value=(
                    f"⚠️ {needing} label(s): recall under {percent(LOW_RECALL)} or fewer than "
                    f"{FEW_IMAGES} taught images. Teach more, then /retrain."
                ),
                inline=False,
            )
        page = f"page {n}/{len(chunks)} · " if len(chunks) > 1 else ""
        embed.set_footer(text=f"{page}model {model_id or '?'} · recall from the last retrain")
        pages.append(embed)
    return pages
