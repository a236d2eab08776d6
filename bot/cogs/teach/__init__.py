"""Teach: ``/teach images|zip|from-channel``, the "Teach as..." message menu, the one
teaching path, bulk teaching and the label picker.

Owns ``TeachCog`` (``_cog.py``), :func:`teach_images` (``_teach_images.py``: every image
taught, whichever way, is checked and stored there), bulk teaching (``_bulk.py``:
:func:`teach_many` in batches, :func:`teach_archive` for a zip; ``_zip.py`` and
``_from_channel.py`` are the two bulk commands, ``_bulk_replies.py`` their progress and
report in Discord), labels as members type them (``_labels.py``), the label picker
(``_label_picker.py``: its select, page buttons and "Something else..." modal) and
"Teach as..." once a label is picked (``_teach_as.py``).

Other features and the dashboard may use: :func:`teach_images` and :class:`TeachResult`,
:func:`teach_many` / :func:`teach_archive` with :class:`BulkItem` and :class:`BulkReport`,
:func:`normalize_label` and :data:`LABEL_RULES`, :func:`server_labels`, and the label
picker (:func:`label_picker`, :func:`picker_text`, and :func:`add_label_target` /
:func:`remove_label_target` with a :class:`LabelTarget` for their own kinds of target),
and reading a zip of labelled images (:func:`read_label_archive`, ``_archive.py``).
"""

from __future__ import annotations

from bot.cogs.teach._archive import (
    ArchiveContents,
    ArchiveLimits,
    ArchiveRefused,
    read_label_archive,
)
from bot.cogs.teach._bulk import BulkItem, BulkReport, EntryOutcome, teach_archive, teach_many
from bot.cogs.teach._cog import TeachCog
from bot.cogs.teach._label_picker import (
    PICKER_ITEMS,
    LabelTarget,
    add_label_target,
    label_picker,
    picker_text,
    remove_label_target,
)
from bot.cogs.teach._labels import LABEL_RULES, normalize_label, server_labels
from bot.cogs.teach._teach_as import teach_picked
from bot.cogs.teach._teach_images import TeachResult, teach_images
from bot.core.client import ClassifierBot

__all__ = [
    "LABEL_RULES",
    "ArchiveContents",
    "ArchiveLimits",
    "ArchiveRefused",
    "BulkItem",
    "BulkReport",
    "EntryOutcome",
    "LabelTarget",
    "TeachCog",
    "TeachResult",
    "add_label_target",
    "label_picker",
    "normalize_label",
    "picker_text",
    "read_label_archive",
    "remove_label_target",
    "server_labels",
    "setup",
    "teach_archive",
    "teach_images",
    "teach_many",
    "teardown",
]


async def setup(bot: ClassifierBot) -> None:
    bot.add_dynamic_items(*PICKER_ITEMS)  # the picker keeps working after a restart
    add_label_target(bot, "m", LabelTarget(teach_picked))
    await bot.add_cog(TeachCog(bot))


async def teardown(bot: ClassifierBot) -> None:
    bot.remove_dynamic_items(*PICKER_ITEMS)
    remove_label_target(bot, "m")
