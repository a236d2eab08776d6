"""Teaching many images at once: a zip (``/teach zip``, the dashboard), a channel's history
(``/teach from-channel``) and the dashboard's uploads all go through :func:`teach_many`.

It hands the images to the one teaching path (:func:`teach_images`) in chunks of at most
:data:`BATCH` images of one label and one author (an image another member posted, in a
channel, is taught as posted by them, so their ``/forget mine`` reaches it). Each chunk
is one turn at the door (``bot.core.admission``, on the caller's ``path`` for the
``member_id`` who asked: the chunk's downloads and the backend's check happen in that
turn), so each backend request stays small and other servers' requests go between the
chunks. A chunk the door refuses (``Busy``) is tried again a few times
(:data:`BUSY_RETRIES_S`, 15 s in all, so a web request or a command's progress never
waits long), then refused; a refusal because the bot is stopping ends the whole job.
Images given as attachments (a channel's) are downloaded in their chunk's turn, so memory
holds one chunk and no link is kept for later. The first quota a chunk hits stops the
rest: they are reported as over quota, not downloaded, not checked.

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
from bot.cogs.teach._teach_images import MAX_TEACH_IMAGES, Source, TeachResult, teach_images
from bot.core.errors import Busy
from bot.db import ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

#: Images per call of the teaching path (one turn at the door, one backend request).
BATCH = MAX_TEACH_IMAGES
#: Waits before trying a chunk again when the door refuses it (then the chunk is refused).
BUSY_RETRIES_S = (1.0, 2.0, 4.0, 8.0)

LEARNED, OVER_QUOTA = "learned", "over_quota"
Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BulkItem:
    label: str  # normalised
    name: str  # what the report calls it (a file name, an archive path, a message's file)
    data: Source  # the bytes, the attachment to download in its turn, or why there are none
    author_id: int | None = None  # who posted it, when not the member teaching (a message's)


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


async def teach_many(
    bot: ClassifierBot,
    scope: ScopedData,
    items: Sequence[BulkItem],
    *,
    path: str,
    member_id: int,
    user_id: int,
    user_name: str,
    progress: Progress | None = None,
    report: BulkReport | None = None,
) -> BulkReport:
    """Teach ``items`` through :func:`teach_images` in chunks (one turn at the door on
    ``path`` for ``member_id`` each), as taught by ``user_id``; ``progress(done, total)``
    after each :data:`BATCH` items. Entries are added to ``report`` (a new one by
    default). ``ShuttingDown`` when the bot stops meanwhile (what was taught stays)."""
    report = report if report is not None else BulkReport()
    total = len(items)
    quota: str | None = None
    for start in range(0, total, BATCH):
        batch = items[start : start + BATCH]
        if quota is not None:
            report.entries += [EntryOutcome(i.name, i.label, OVER_QUOTA, quota) for i in batch]
            continue
        chunks: dict[tuple[str, int | None], list[BulkItem]] = {}
        for item in batch:
            chunks.setdefault((item.label, item.author_id), []).append(item)
        for (label, author_id), group in chunks.items():
            if quota is not None:
                report.entries += [EntryOutcome(i.name, label, OVER_QUOTA, quota) for i in group]
                continue
            images = [(i.name, i.data) for i in group]
            results = await _teach_chunk(
                bot, scope, label, images, path, member_id, user_id, user_name, author_id
            )
            for item, result in zip(group, results, strict=True):
                outcome = outcome_of(item, result)
                report.entries.append(outcome)
                if outcome.kind == OVER_QUOTA:
                    quota = outcome.text
        if progress is not None:
            await progress(min(start + BATCH, total), total)
    return report


async def _teach_chunk(
    bot: ClassifierBot,
    scope: ScopedData,
    label: str,
    images: list[tuple[str, Source]],
    path: str,
    member_id: int,
    user_id: int,
    user_name: str,
    author_id: int | None,
) -> list[TeachResult]:
    """One chunk through the teaching path (one turn at the door); when the door refuses
    it for load, wait and try again (:data:`BUSY_RETRIES_S`), then refuse the chunk."""
    for wait_s in (*BUSY_RETRIES_S, None):
        try:
            return await teach_images(
                bot,
                scope,
                label,
                images,
                path=path,
                member_id=member_id,
                user_id=user_id,
                user_name=user_name,
                author_id=author_id,
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
    path: str,
    member_id: int,
    user_id: int,
    user_name: str,
    progress: Progress | None = None,
    report: BulkReport | None = None,
) -> BulkReport:
    """A zip laid out as ``<label>/<image>``: read with the archive's limits (in a thread;
    :class:`ArchiveRefused` for the whole archive), then taught by :func:`teach_many`
    (``path``, ``member_id``: its turns at the door); entries the archive reader refused
    are in the report (``report``, or a new one) with their reason."""
    limits = ArchiveLimits.from_settings(bot.settings)
    contents: ArchiveContents = await asyncio.to_thread(read_label_archive, data, limits)
    report = report if report is not None else BulkReport()
    report.entries += [
        EntryOutcome(r.name, r.label, r.kind, r.reason or "") for r in contents.refused
    ]
    items = [BulkItem(image.label, image.name, image.data) for image in contents.images]
    del contents  # the images' bytes are held by the items only
    return await teach_many(
        bot,
        scope,
        items,
        path=path,
        member_id=member_id,
        user_id=user_id,
        user_name=user_name,
        progress=progress,
        report=report,
    )
