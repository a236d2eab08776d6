"""Per-server quotas and the typed errors that explain them to the user."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.errors import UserError


@dataclass(frozen=True, slots=True)
class Quotas:
    max_labels: int = 50
    max_images: int = 2000
    max_bytes: int = 500_000_000
    retrains_per_hour: int = 6
    #: answered images kept per server so that a correction can teach them
    feedback_images: int = 200
    #: how long answers take votes and corrections (and their images are kept)
    feedback_hours: float = 24.0
    #: corrections waiting in a server's review queue
    review_items: int = 100
    #: corrections one member may have waiting in a server's review queue
    review_per_member: int = 3


@dataclass(frozen=True, slots=True)
class Usage:
    labels: int
    images: int
    bytes: int
    retrains_last_hour: int


class QuotaExceeded(UserError):
    """A server reached one of its limits; the message says which and how to free space."""


class ReviewLimit(QuotaExceeded):
    """A member reached their share of the review queue (or already corrected this)."""


def size_text(n: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


def check_teach(quotas: Quotas, usage: Usage, label_is_new: bool, size: int) -> None:
    """Raise :class:`QuotaExceeded` if one more image of ``size`` bytes is over a limit."""
    if label_is_new and usage.labels >= quotas.max_labels:
        raise QuotaExceeded(
            f"This server already has {usage.labels} labels, the limit is {quotas.max_labels}. "
            "Remove one with `/forget label:` to add another."
        )
    if usage.images >= quotas.max_images:
        raise QuotaExceeded(
            f"This server has {usage.images} taught images, the limit is {quotas.max_images}. "
            "Free space with `/forget label:` or `/forget mine`."
        )
    if usage.bytes + size > quotas.max_bytes:
        raise QuotaExceeded(
            f"This image ({size_text(size)}) would take this server's taught images past "
            f"the {size_text(quotas.max_bytes)} limit ({size_text(usage.bytes)} used). "
            "Free space with `/forget label:` or `/forget mine`."
        )


def check_retrain(quotas: Quotas, retrains_last_hour: int) -> None:
    if retrains_last_hour >= quotas.retrains_per_hour:
        raise QuotaExceeded(
            f"This server has retrained {retrains_last_hour} times in the last hour, the limit "
            f"is {quotas.retrains_per_hour} per hour. Try again later."
        )
