"""The one path every image takes: checks, the door, download, backend, per-image answers.

Every request that classifies goes through the door (:mod:`bot.core.admission`) with
:func:`admitted`, and the backend is only reached with the :class:`Turn` it gives:
:func:`classify_images` (and :func:`classify_attachments`, which downloads inside the
turn) refuses to run without one it holds, and ends it as soon as the backend has
answered, so the reply to Discord happens outside the turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.core.admission import Turn
from bot.core.download import check_url, download, too_large_message
from bot.core.errors import DownloadError, explain
from golem_backend import (
    BackendUnavailable,
    ImageError,
    ImageTooLarge,
    ModelRef,
    Outcome,
    Prediction,
)

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageAnswer:
    attachment: discord.Attachment
    prediction: Prediction | None = None
    error: str | None = None  # what to tell the user when there is no prediction
    data: bytes | None = None  # the image, for the feedback loop (never stored by default)


def precheck(bot: ClassifierBot, attachment: discord.Attachment) -> None:
    """Reject from metadata alone (before deferring): too big, or not on Discord's CDN."""
    limit = bot.settings.max_image_bytes
    if attachment.size > limit:
        raise ImageTooLarge(too_large_message(limit))
    check_url(attachment.url, bot.settings.attachment_hosts)


async def fetch(bot: ClassifierBot, attachment: discord.Attachment) -> bytes:
    precheck(bot, attachment)
    s = bot.settings
    return await download(
        bot.http_session,
        attachment.url,
        allowed_hosts=s.attachment_hosts,
        max_bytes=s.max_image_bytes,
        timeout_s=s.download_timeout_s,
    )


@asynccontextmanager
async def admitted(
    bot: ClassifierBot,
    *,
    server_id: int | None,
    member_id: int,
    path: str,
    images: int,
    cooldown: bool = True,
    on_queued: Callable[[Turn], Awaitable[None]] | None = None,
) -> AsyncIterator[Turn]:
    """Through the door: the member's cooldown checked first (a member over it is told
    at once, never queued), then ``bot.admission.enter`` (``Busy`` or ``ShuttingDown``
    when refused; ``on_queued`` runs when the request has to wait), and the use counted
    once admitted. ``cooldown=False`` for trainers' and admins' actions (teaching,
    corrections, review approvals)."""
    if cooldown:
        bot.cooldowns.check(member_id)
    async with bot.admission.enter(
        server_id=server_id, member_id=member_id, path=path, images=images, on_queued=on_queued
    ) as turn:
        if cooldown:
            bot.cooldowns.hit(member_id)
        yield turn


async def classify_images(
    bot: ClassifierBot,
    turn: Turn,
    images: list[bytes],
    top_k: int,
    model: ModelRef | None,
    tenant: str,
) -> list[Outcome]:
    """Classify with ``model`` (``None``: the default model) in ``turn``, which ends when
    the backend has answered (or failed). A server model the backend cannot use (file
    missing or failing verification) falls back to the default model."""
    if not turn.holding or len(images) > turn.images:
        raise RuntimeError(
            f"{len(images)} image(s) classified outside a turn through the door that holds "
            f"them ({turn})"
        )
    try:
        return await bot.backend.classify(images, top_k, model=model, tenant=tenant)
    except BackendUnavailable as exc:
        if model is None:
            raise
        log.warning(
            "model %s of %s is unusable (%s); answering with the default model",
            model.model_id,
            tenant,
            exc,
        )
        return await bot.backend.classify(images, top_k, model=None, tenant=tenant)
    finally:
        turn.done()


async def classify_attachments(
    bot: ClassifierBot,
    turn: Turn,
    attachments: Sequence[discord.Attachment],
    top_k: int,
    *,
    model: ModelRef | None,
    tenant: str,
) -> list[ImageAnswer]:
    """Download every attachment concurrently and classify the good ones in one request,
    in ``turn`` (ended when the backend has answered, or when nothing was downloaded).

    Per-image problems (download, not an image, corrupt...) become that image's ``error``;
    whole-request failures (backend busy/down/timeout) propagate.
    """

    async def get(att: discord.Attachment) -> bytes | Exception:
        try:
            return await fetch(bot, att)
        except (DownloadError, ImageError) as exc:
            bot.metrics.download_failed(exc)
            return exc

    fetched = await asyncio.gather(*(get(a) for a in attachments))
    good = [i for i, data in enumerate(fetched) if isinstance(data, bytes)]
    if not good:
        turn.done()
    outcomes = (
        await classify_images(bot, turn, [fetched[i] for i in good], top_k, model, tenant)  # type: ignore[misc]
        if good
        else []
    )
    results: dict[int, Prediction | Exception] = dict(zip(good, outcomes, strict=True))
    answers = []
    for i, att in enumerate(attachments):
        outcome = results.get(i, fetched[i])
        if isinstance(outcome, Prediction):
            data = fetched[i]
            answers.append(
                ImageAnswer(att, prediction=outcome, data=data if isinstance(data, bytes) else None)
            )
        else:
            assert isinstance(outcome, Exception)
            answers.append(ImageAnswer(att, error=explain(outcome) or str(outcome)))
    return answers
