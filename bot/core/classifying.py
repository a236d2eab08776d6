"""The one path every image takes: checks, download, backend, and per-image answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

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


async def classify_images(
    bot: ClassifierBot, images: list[bytes], top_k: int, model: ModelRef | None, tenant: str
) -> list[Outcome]:
    """Classify with ``model`` (``None``: the default model). A server model the backend
    cannot use (file missing or failing verification) falls back to the default model."""
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


async def classify_attachments(
    bot: ClassifierBot,
    attachments: Sequence[discord.Attachment],
    top_k: int,
    *,
    model: ModelRef | None,
    tenant: str,
) -> list[ImageAnswer]:
    """Download every attachment concurrently and classify the good ones in one request.

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
    outcomes = (
        await classify_images(bot, [fetched[i] for i in good], top_k, model, tenant)  # type: ignore[misc]
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
