"""In-memory state of the simulated Discord: users, guilds, channels, messages, interactions.

Payload builders here produce the JSON shapes discord.py 2.7 parses. Everything is plain
data; the HTTP/websocket layers live in ``server.py`` and ``gateway.py``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

# --- permission bits (https://discord.com/developers/docs/topics/permissions) ---------------
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
USE_EXTERNAL_APPS = 1 << 50  # members may use apps they installed themselves
ALL_PERMISSIONS = (1 << 51) - 1
#: What @everyone gets in a fresh guild (roughly Discord's default set).
DEFAULT_EVERYONE = (
    VIEW_CHANNEL
    | ADD_REACTIONS
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | USE_EXTERNAL_APPS
)

# --- gateway intents -----------------------------------------------------------------------
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | INTENT_MESSAGE_CONTENT

EPHEMERAL = 1 << 6
LOADING = 1 << 7

_EPOCH_MS = 1420070400000
_counter = itertools.count(1)


def snowflake() -> int:
    """A fresh, increasing Discord-style id."""
    return ((int(time.time() * 1000) - _EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


@dataclass
class User:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }

    def full_payload(self) -> dict[str, Any]:
        """Every field the spec's ``UserResponse`` requires (members fetched over REST)."""
        return {**self.payload(), "flags": 0, "primary_guild": None}

    def me_payload(self, *, email: bool = False) -> dict[str, Any]:
        """``GET /users/@me`` (``UserPIIResponse``); ``email``: the token has that scope."""
        data = {**self.full_payload(), "mfa_enabled": False, "locale": "en-US"}
        if email:
            data.update(email=f"{self.name}@users.example", verified=True)
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int

    def payload(self, position: int) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    #: target id (role or user) -> (allow, deny)
    overwrites: dict[int, tuple[int, int]] = field(default_factory=dict)

    def payload(self, role_ids: set[int] | None = None) -> dict[str, Any]:
        """``role_ids``: the guild's roles; an overwrite for any other id is a member's
        (type 1). Without it every overwrite is sent as a role's."""
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "permission_overwrites": [
                {
                    "id": str(t),
                    "type": 0 if role_ids is None or t in role_ids else 1,
                    "allow": str(a),
                    "deny": str(d),
                }
                for t, (a, d) in self.overwrites.items()
            ],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }


@dataclass
class Emoji:
    """A custom emoji of a guild."""

    id: int
    name: str
    animated: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "animated": self.animated,
            "roles": [],
            "require_colons": True,
            "managed": False,
            "available": True,
        }

    @property
    def markup(self) -> str:
        """How a user types it in a message: ``<:name:id>``."""
        return f"<{'a' if self.animated else ''}:{self.name}:{self.id}>"


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    everyone: Role
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids
    #: True models a server whose admins changed the command permissions so that everyone
    #: may use every command (Server Settings > Integrations): default permissions ignored.
    commands_open_to_everyone: bool = False
    emojis: dict[int, Emoji] = field(default_factory=dict)

    def base_permissions(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in self.members.get(user_id, []):
            perms |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def channel_permissions(self, user_id: int, channel: Channel) -> int:
        perms = self.base_permissions(user_id)
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        allow, deny = channel.overwrites.get(self.everyone.id, (0, 0))
        perms = (perms & ~deny) | allow
        r_allow = r_deny = 0
        for role_id in self.members.get(user_id, []):
            a, d = channel.overwrites.get(role_id, (0, 0))
            r_allow, r_deny = r_allow | a, r_deny | d
        perms = (perms & ~r_deny) | r_allow
        allow, deny = channel.overwrites.get(user_id, (0, 0))
        return (perms & ~deny) | allow

    def member_payload(self, user: User, channel: Channel | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": user.payload(),
            "roles": [str(r) for r in self.members.get(user.id, [])],
            "joined_at": iso_now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
        }
        if channel is not None:
            data["permissions"] = str(self.channel_permissions(user.id, channel))
        return data

    def payload(self, users: dict[int, User]) -> dict[str, Any]:
        roles = [self.everyone, *self.roles.values()]
        return {
            "id": str(self.id),
            "name": self.name,
            "owner_id": str(self.owner_id),
            "icon": None,
            "features": [],
            "roles": [r.payload(i) for i, r in enumerate(roles)],
            "channels": [c.payload({r.id for r in roles}) for c in self.channels.values()],
            "members": [self.member_payload(users[u]) for u in self.members if u in users],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "emojis": [e.payload() for e in self.emojis.values()],
            "stickers": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "voice_states": [],
            "presences": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "joined_at": iso_now(),
            "system_channel_id": None,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "afk_channel_id": None,
            "mfa_level": 0,
            "nsfw_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "application_id": None,
        }


@dataclass
class StoredFile:
    """Bytes the CDN serves."""

    data: bytes
    filename: str
    content_type: str | None
    chunked: bool = False  # serve without Content-Length (streamed)


@dataclass
class Attachment:
    id: int
    filename: str
    size: int  # as declared in the payload (a test may lie on purpose)
    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    data: bytes | None = None  # only for files the bot uploaded

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.width is not None:
            data["width"], data["height"] = self.width, self.height
        return data


@dataclass
class Message:
    """A message in a channel, or an interaction response/follow-up."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    reference_id: int | None = None
    interaction_id: int | None = None
    deleted: bool = False
    components: list[dict[str, Any]] = field(default_factory=list)  # action rows
    #: emoji (unicode, or ``name:id``) -> ids of the users who reacted with it
    reactions: dict[str, set[int]] = field(default_factory=dict)
    #: (monotonic time, content, embeds, flags) for each state, the first one included.
    history: list[tuple[float, str, list[dict[str, Any]], int]] = field(default_factory=list)
    created_mono: float = field(default_factory=time.monotonic)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def text(self) -> str:
        """Content plus every embed's visible text, for assertions."""
        parts = [self.content]
        for e in self.embeds:
            parts += [e.get("title", ""), e.get("description", "")]
            parts += [f"{f.get('name', '')}\n{f.get('value', '')}" for f in e.get("fields", [])]
            parts.append((e.get("footer") or {}).get("text", ""))
        return "\n".join(p for p in parts if p)

    def snapshot(self) -> None:
        self.history.append((time.monotonic(), self.content, list(self.embeds), self.flags))

    def payload(self, *, strip_content: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": "" if strip_content else self.content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [] if strip_content else [a.payload() for a in self.attachments],
            "embeds": [] if strip_content else self.embeds,
            "pinned": False,
            "type": 19 if self.reference_id else 0,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.reference_id is not None:
            data["message_reference"] = {
                "message_id": str(self.reference_id),
                "channel_id": str(self.channel_id),
                "type": 0,
            }
        if self.interaction_id is not None:
            data["webhook_id"] = str(self.author.id)
            data["application_id"] = str(self.author.id)
        return data


@dataclass
class Command:
    id: int
    application_id: int
    guild_id: int | None
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def type(self) -> int:
        return int(self.data.get("type", 1))

    def payload(self) -> dict[str, Any]:
        out = dict(self.data)
        out.update(
            id=str(self.id),
            application_id=str(self.application_id),
            version=str(self.id),
            description=self.data.get("description", ""),
            default_member_permissions=self.data.get("default_member_permissions"),
        )
        if self.guild_id is not None:
            out["guild_id"] = str(self.guild_id)
        return out


@dataclass
class Application:
    """A bot application: its token, user, the privileged intents enabled in the portal."""

    id: int
    token: str
    user: User
    message_content_allowed: bool = True
    #: OAuth2: the client secret, and the redirect URIs registered in the portal
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uris: list[str] = field(default_factory=list)
    global_commands: dict[tuple[str, int], Command] = field(default_factory=dict)
    guild_commands: dict[int, dict[tuple[str, int], Command]] = field(default_factory=dict)
    command_syncs: int = 0

    def find_command(self, guild_id: int | None, name: str, type_: int) -> Command | None:
        if guild_id is not None:
            cmd = self.guild_commands.get(guild_id, {}).get((name, type_))
            if cmd is not None:
                return cmd
        return self.global_commands.get((name, type_))

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.user.name,
            "description": "simulated application",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {**self.user.payload(), "bot": False},
            "verify_key": "0" * 64,
            "flags": (1 << 19) if self.message_content_allowed else 0,
            "team": None,
            "summary": "",
        }
