"""Forgetting one taught image (the dashboard's Delete; ``/forget`` removes whole labels or
a member's images). An administrator may remove any taught image of the server, a trainer
only the ones they taught (as ``/forget mine`` does); the caller says which it is."""

from __future__ import annotations

import asyncio
import logging

from bot.core.errors import UserError
from bot.db import ScopedData

log = logging.getLogger(__name__)


class ImageNotForgotten(UserError):
    """No such taught image of that label, or it is someone else's."""


async def forget_taught_image(
    scope: ScopedData, label: str, sha256: str, *, user_id: int, any_author: bool
) -> None:
    """Remove ``label``'s image ``sha256`` (its file too, unless another label uses it)."""
    removed = await asyncio.shield(
        scope.forget_image(label, sha256, user_id=None if any_author else user_id)
    )
    if not removed:
        mine = "" if any_author else " by you"
        raise ImageNotForgotten(f"There is no such image of **{label}** taught{mine}.")
    log.info("server %s: one image of %s forgotten by %s", scope.scope_id, label, user_id)
