"""Labels as members type them, and the labels a server has."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.errors import UserError
from bot.core.tenancy import labels_of
from bot.db import ScopedData
from golem_backend import UNKNOWN

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

LABEL_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")
LABEL_RULES = (
    "Labels are 1-32 characters: lowercase letters a-z, digits, '_' or '-', "
    "starting and ending with a letter or digit."
)


def normalize_label(raw: str) -> str:
    """The canonical form of a label typed by a user, or :class:`UserError`.

    Case is folded and inner spaces become ``_``; anything that could escape the taught
    folder (``/``, ``\\``, ``..``, NUL, non-ASCII look-alikes) fails the pattern.
    """
    label = raw.strip().lower().replace(" ", "_")
    if not LABEL_PATTERN.fullmatch(label):
        raise UserError(f"{label[:40]!r} is not a valid label. {LABEL_RULES}")
    if label == UNKNOWN:
        raise UserError(f"'{UNKNOWN}' is reserved for images the model does not recognise.")
    return label


async def server_labels(bot: ClassifierBot, scope: ScopedData) -> list[str]:
    """The labels of the server's model and of its taught images, sorted."""
    model_labels, _ = await labels_of(bot, scope)
    taught = await scope.label_counts()
    return sorted((set(model_labels) | set(taught)) - {UNKNOWN})
