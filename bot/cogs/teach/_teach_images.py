"""The one teaching path: images (attachments, kept answers, review items) checked by
the backend's decoder and stored as a server's taught examples, each with a line that
says what happened to it.

``/teach`` (up to 10 attachments), the "Teach as..." message menu, a trainer's correction
and an approved review item all go through :func:`teach_images`, so quotas, the
verification and the door (``bot.core.admission``: the download and the backend's check
take a turn there; the database writes come after it) are the same everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.core.classifying import admitted, classify_images, fetch
from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.download import image_extension
from bot.core.embeds import percent
from bot.core.errors import DownloadError, UserError, explain
from bot.core.tenancy import labels_of, model_of
from bot.db import QuotaExceeded, ScopedData
from golem_backend import BackendError, ImageError, ImageTooLarge, Prediction

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

#: At most this many images are taught at once (``/teach``'s attachments, "Teach as...").
MAX_TEACH_IMAGES = 10


@dataclass(frozen=True, slots=True)
class TeachResult:
    name: str  # the file name shown to the user
    learned: bool
    line: str  # what happened, for the reply
    guess: Prediction | None = None  # what the current model said (when it was checked)
    count: int = 0  # taught images of the label afterwards
    duplicate: bool = False
    not_image: bool = False  # refused as not an image (or a damaged one)
    over_quota: bool = False  # refused by one of the server's quotas


def not_an_image(error: BaseException) -> bool:
    """Refused for what the bytes are (not an image, empty, damaged), not for their size."""
    return isinstance(error, ImageError) and not isinstance(error, ImageTooLarge)


#: An image to teach: its bytes, the attachment to download (in the door), or why it
#: cannot be taught.
Source = bytes | discord.Attachment | Exception


def attachment_sources(
    attachments: Sequence[discord.Attachment],
) -> list[tuple[str, Source]]:
    """``(file name, attachment)`` for :func:`teach_images`, which downloads them."""
    return [(a.filename, a) for a in attachments]


async def _bytes_of(bot: ClassifierBot, source: Source) -> bytes | Exception:
    if not isinstance(source, discord.Attachment):
        return source
    try:
        return await fetch(bot, source)
    except (DownloadError, ImageError) as exc:
        return exc


async def teach_images(
    bot: ClassifierBot,
    scope: ScopedData,
    label: str,
    images: Sequence[tuple[str, Source]],
    *,
    path: str,
    member_id: int,
    user_id: int,
    user_name: str,
    author_id: int | None = None,
) -> list[TeachResult]:
    """Download ``images`` and verify them with the backend's decoder (one request, one
    turn at the door on ``path`` for ``member_id``, who asked), then store the good ones
    under ``label`` (a normalised label) as taught by ``user_id``. A quota stops the rest
    with its message. A refusal at the door (``Busy``, ``ShuttingDown``) is raised:
    nothing was taught. ``author_id``: who posted the images when that is not
    ``user_id`` (another member's message, answer or correction): their ``/forget mine``
    reaches them too."""
    if author_id == user_id:
        author_id = None
    results: dict[int, TeachResult] = {}
    todo = [i for i, (_, source) in enumerate(images) if not isinstance(source, Exception)]
    fetched: dict[int, bytes | Exception] = {
        i: source for i, (_, source) in enumerate(images) if isinstance(source, Exception)
    }
    good: list[int] = []
    outcomes: list[object] = []
    if todo:
        async with admitted(
            bot,
            server_id=scope.scope_id or None,
            member_id=member_id,
            path=path,
            images=len(todo),
            cooldown=False,
        ) as turn:
            data = await asyncio.gather(*(_bytes_of(bot, images[i][1]) for i in todo))
            fetched.update(zip(todo, data, strict=True))
            good = [i for i in todo if isinstance(fetched[i], bytes)]
            if good:
                model = await model_of(scope)
                try:
                    outcomes = list(
                        await classify_images(
                            bot,
                            turn,
                            [fetched[i] for i in good],
                            1,
                            model,
                            scope.tenant,  # type: ignore[misc]
                        )
                    )
                except BackendError as exc:
                    reason = (
                        f"I couldn't check this image ({explain(exc)}), so I didn't store it. "
                        "Please try again in a moment."
                    )
                    outcomes = [UserError(reason)] * len(good)
    for i, error in fetched.items():
        if isinstance(error, Exception):
            results[i] = TeachResult(
                images[i][0],
                False,
                explain(error) or "could not be read",
                not_image=not_an_image(error),
            )
    quota_hit: str | None = None
    for i, outcome in zip(good, outcomes, strict=True):
        name, data = images[i][0], fetched[i]
        assert isinstance(data, bytes)
        if isinstance(outcome, ImageError | UserError):
            results[i] = TeachResult(name, False, outcome.message, not_image=not_an_image(outcome))
            continue
        if quota_hit is not None:
            results[i] = TeachResult(name, False, quota_hit, over_quota=True)
            continue
        guess = outcome if isinstance(outcome, Prediction) else None
        try:
            extension = image_extension(data)
            # the file and its record are written together, even if shutdown cancels this
            added, count = await asyncio.shield(
                scope.add_taught(
                    label,
                    data,
                    extension,
                    user_id=user_id,
                    user_name=user_name,
                    author_id=author_id,
                )
            )
        except QuotaExceeded as exc:
            quota_hit = exc.message
            results[i] = TeachResult(name, False, exc.message, guess, over_quota=True)
            continue
        except UserError as exc:
            results[i] = TeachResult(name, False, exc.message, guess)
            continue
        line = (
            f"learned as **{label}** ({count} taught image(s) of this label)"
            if added
            else f"already taught as **{label}** (a duplicate)"
        )
        results[i] = TeachResult(name, added, line, guess, count, not added)
    return [results[i] for i in range(len(images))]


async def teach_report(
    bot: ClassifierBot, scope: ScopedData, label: str, results: list[TeachResult]
) -> str:
    """The reply for a batch: a line per image, and advice about new labels."""
    learned = sum(r.learned for r in results)
    head = f"Taught {learned} of {len(results)} image(s) as **{label}**."
    lines = [head] + [f"- `{clip(r.name, 60)}`: {r.line}" for r in results]
    if learned and label not in (await labels_of(bot, scope))[0]:
        lines.append(f"**{label}** is a new label: give it 5+ images before retraining.")
    if learned:
        lines.append("They're used by the next /retrain.")
    return clip("\n".join(lines), CONTENT_MAX)


def single_report(label: str, result: TeachResult, filename: str, known: bool) -> str:
    """The reply for one image (as /teach has always answered)."""
    if result.learned:
        lines = [
            f"Learned **{label}** from `{filename}`. {result.count} taught image(s) for this "
            "label; they're used by the next /retrain."
        ]
    elif result.duplicate:
        lines = [f"I already had this image as **{label}**."]
    else:
        raise UserError(result.line)
    if not known:
        lines.append(f"**{label}** is a new label: give it 5+ images before retraining.")
    if result.guess is not None:
        guess = f"{result.guess.label} ({percent(result.guess.confidence)})"
        lines.append(f"The current model says: {guess}.")
    return "\n".join(lines)
