"""Teaching many images at once: a zip (``/teach zip``, the dashboard), a channel's history
(``/teach from-channel``) and the dashboard's uploads all go through :func:`teach_many`.

It hands the images to the one teaching path (:func:`teach_images`) in batches of
:data:`BATCH`, so each backend request stays small and fair to other servers, with the
work gate around each batch; a batch the bot is too busy for is tried again a few times.
Images given as loaders (a channel's attachments) are downloaded one batch at a time, so
memory holds one batch. The first quota a batch hits stops the rest: they are reported as
over quota, not downloaded, not checked.

The result is a :class:`BulkReport`: one line per entry and the counts (learned,
duplicates, not images, over quota, other problems).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.cogs.teach._archive import (
    DUPLICATE,
    NOT_IMAGE,
    REFUSED,
    ArchiveContents,
    ArchiveLimits,
    read_label_archive,
)
from bot.cogs.teach._teach_images import MAX_TEACH_IMAGES, TeachResult, teach_images
from bot.core.errors import Busy
from bot.db import ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

#: Images per call of the teaching path (one backend request each).
BATCH = MAX_TEACH_IMAGES
#: Waits before trying a batch again when the bot is busy (then the rest is refused).
BUSY_RETRIES_S = (1.0, 2.0, 4.0, 8.0)

LEARNED, OVER_QUOTA = "learned", "over_quota"
Loader = Callable[[], Awaitable[bytes | Exception]]
Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BulkItem:
    label: str  # normalised
    name: str  # what the report calls it (a file name, an archive path, a message's file)
    data: bytes | Exception | Loader  # the bytes, why there are none, or how to get them


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    name: str
    label: str | None
    kind: str  # LEARNED, DUPLICATE, NOT_IMAGE, OVER_QUOTA or REFUSED
    text: str  # what happened, in a few words

    def line(self) -> str:
        where = f" ({self.label})" if self.label else ""
        return f"- {self.name}{where}: {self.text}"


@dataclass
class BulkReport:
    entries: list[EntryOutcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(e.kind == kind for e in self.entries)

    @property
    def learned(self) -> int:
        return self.count(LEARNED)

    def learned_by_label(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for e in self.entries:
            if e.kind == LEARNED and e.label:
                found[e.label] = found.get(e.label, 0) + 1
        return found

    def summary(self) -> str:
        """One line: what was learned, and how many were refused for each reason."""
        by_label = self.learned_by_label()
        labels = ", ".join(f"{label} {n}" for label, n in sorted(by_label.items()))
        head = f"Learned {self.learned} of {len(self.entries)} image(s)"
        if labels:
            head += f" ({labels})"
        parts = [
            f"{self.count(DUPLICATE)} duplicate(s)",
            f"{self.count(NOT_IMAGE)} not image(s)",
            f"{self.count(OVER_QUOTA)} over quota",
        ]
        if self.count(REFUSED):
            parts.append(f"{self.count(REFUSED)} other problem(s)")
        return f"{head}. {', '.join(parts)}."

    def text(self) -> str:
        """The whole report: the summary, then a line per entry."""
        return "\n".join([self.summary(), "", *(e.line() for e in self.entries)]) + "\n"


def outcome_of(item: BulkItem, result: TeachResult) -> EntryOutcome:
    if result.learned:
        kind, text = LEARNED, f"learned ({result.count} image(s) of this label)"
    elif result.duplicate:
        kind, text = DUPLICATE, "already taught (a duplicate)"
    elif result.over_quota:
        kind, text = OVER_QUOTA, result.line
    elif result.not_image:
        kind, text = NOT_IMAGE, result.line
    else:
        kind, text = REFUSED, result.line
    return EntryOutcome(item.name, item.label, kind, text.replace("**", ""))


async def _load(item: BulkItem) -> tuple[str, bytes | Exception]:
    data = item.data
    if callable(data):
        data = await data()
    return item.name, data


async def teach_many(
    bot: ClassifierBot,
    scope: ScopedData,
    items: Sequence[BulkItem],
    *,
    user_id: int,
    user_name: str,
    progress: Progress | None = None,
    report: BulkReport | None = None,
) -> BulkReport:
    """Teach ``items`` in batches through :func:`teach_images`; ``progress(done, total)``
    after each batch. Entries are added to ``report`` (a new one by default)."""
    report = report if report is not None else BulkReport()
    total = len(items)
    quota: str | None = None
    for start in range(0, total, BATCH):
        batch = items[start : start + BATCH]
        if quota is not None:
            report.entries += [EntryOutcome(i.name, i.label, OVER_QUOTA, quota) for i in batch]
            continue
        by_label: dict[str, list[BulkItem]] = {}
        for item in batch:
            by_label.setdefault(item.label, []).append(item)
        loaded = dict(zip(map(id, batch), await asyncio.gather(*map(_load, batch)), strict=True))
        for label, group in by_label.items():
            if quota is not None:
                report.entries += [EntryOutcome(i.name, label, OVER_QUOTA, quota) for i in group]
                continue
            images = [loaded[id(i)] for i in group]
            results = await _teach_batch(bot, scope, label, images, user_id, user_name)
            for item, result in zip(group, results, strict=True):
                outcome = outcome_of(item, result)
                report.entries.append(outcome)
                if outcome.kind == OVER_QUOTA:
                    quota = outcome.text
        if progress is not None:
            await progress(min(start + BATCH, total), total)
    return report


async def _teach_batch(
    bot: ClassifierBot,
    scope: ScopedData,
    label: str,
    images: list[tuple[str, bytes | Exception]],
    user_id: int,
    user_name: str,
) -> list[TeachResult]:
    """One batch through the work gate and the teaching path; when the bot is busy it
    waits and tries again (:data:`BUSY_RETRIES_S`), then refuses the batch."""
    for wait_s in (*BUSY_RETRIES_S, None):
        try:
            async with bot.gate.slot(scope.tenant):
                return await teach_images(
                    bot, scope, label, images, user_id=user_id, user_name=user_name
                )
        except Busy as exc:
            if wait_s is None or bot.is_closing:
                return [TeachResult(name, False, exc.message) for name, _ in images]
            log.info("%s: the bot is busy, teaching again in %.0f s", scope.tenant, wait_s)
            await asyncio.sleep(wait_s)
    raise AssertionError("unreachable")


async def teach_archive(
    bot: ClassifierBot,
    scope: ScopedData,
    data: bytes,
    *,
    user_id: int,
    user_name: str,
    progress: Progress | None = None,
    report: BulkReport | None = None,
) -> BulkReport:
    """A zip laid out as ``<label>/<image>``: read with the archive's limits (in a thread;
    :class:`ArchiveRefused` for the whole archive), then taught; entries the archive
    reader refused are in the report (``report``, or a new one) with their reason."""
    limits = ArchiveLimits.from_settings(bot.settings)
    contents: ArchiveContents = await asyncio.to_thread(read_label_archive, data, limits)
    report = report if report is not None else BulkReport()
    report.entries += [
        EntryOutcome(r.name, r.label, r.kind, r.reason or "") for r in contents.refused
    ]
    items = [BulkItem(image.label, image.name, image.data) for image in contents.images]
    del contents  # the images' bytes are held by the items only
    return await teach_many(
        bot, scope, items, user_id=user_id, user_name=user_name, progress=progress, report=report
    )
