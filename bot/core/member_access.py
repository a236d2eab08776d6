"""Who may manage a server's classifier: the rule the commands and the dashboard share.

An administrator of the server (its owner, or a member whose permissions include
Administrator), or one of the bot's operators (``ADMIN_USER_IDS``) who is a member, may do
everything; a member holding the server's trainer role (``/settings trainer_role:``) may
teach and review. Everyone else may do neither. The inputs are plain values, so a command
(reading ``interaction.permissions``) and the dashboard (reading Discord's answers for a
logged-in member) decide the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

ADMINISTRATOR = 1 << 3  # Discord's permission bit


class ServerRole(enum.Enum):
    ADMIN = "admin"
    TRAINER = "trainer"

    @property
    def title(self) -> str:
        return "Administrator" if self is ServerRole.ADMIN else "Trainer"


def is_administrator(*, owner: bool, permissions: int, operator: bool) -> bool:
    return owner or operator or bool(permissions & ADMINISTRATOR)


def server_role(
    *,
    owner: bool,
    permissions: int,
    operator: bool,
    role_ids: Collection[int],
    trainer_role_id: int | None,
) -> ServerRole | None:
    """What this member may do in the server, or ``None`` (neither admin nor trainer)."""
    if is_administrator(owner=owner, permissions=permissions, operator=operator):
        return ServerRole.ADMIN
    if trainer_role_id is not None and trainer_role_id in role_ids:
        return ServerRole.TRAINER
    return None
