"""A server's labels at a glance: each label's taught images, whether the model knows it,
and its recall from the last retrain. /labels shows it as pages of embeds, the dashboard
as a page with example images: both read it here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.cogs.labels._pages import LabelLine, label_lines
from bot.core.tenancy import labels_of
from bot.db import ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot


@dataclass(frozen=True, slots=True)
class LabelOverview:
    lines: list[LabelLine]
    model_id: str | None  # the model that answers (the server's, or the default one)


async def label_overview(bot: ClassifierBot, scope: ScopedData) -> LabelOverview:
    model_labels, model_id = await labels_of(bot, scope)
    record = await scope.current_model() if scope.scope_id else None
    recall = record.metrics.get("per_label_recall") if record else None
    lines = label_lines(
        model_labels, await scope.label_counts(), recall if isinstance(recall, dict) else {}
    )
    return LabelOverview(lines, model_id)
