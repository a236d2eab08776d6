"""What a user does: the simulator's methods for slash commands, message menus, buttons,
selects, modals, autocomplete and roles (component payloads: ``component_interactions``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tests.discord_sim import component_interactions
from tests.discord_sim.commands import CommandRejected, build_options, visible_command
from tests.discord_sim.model import (
    Application,
    Channel,
    Command,
    Guild,
    Message,
    Role,
    User,
    snowflake,
)
from tests.discord_sim.validation import ATTACHMENT_LIMIT

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator, Interaction


class UserActions:
    """Mixed into :class:`~tests.discord_sim.simulator.DiscordSimulator`."""

    @property
    def _sim(self) -> DiscordSimulator:
        return self  # type: ignore[return-value]

    async def press_button(
        self,
        app: Application,
        message: Message,
        user: User,
        label: str | None = None,
        *,
        custom_id: str | None = None,
    ) -> Interaction:
        """Press the button labelled ``label`` (or with ``custom_id``) on ``message``."""
        return await component_interactions.press(
            self._sim, app, message, user, label=label, custom_id=custom_id
        )

    async def choose(
        self,
        app: Application,
        message: Message,
        user: User,
        values: list[str],
        *,
        placeholder: str | None = None,
        custom_id: str | None = None,
    ) -> Interaction:
        """Choose ``values`` in a string select of ``message``."""
        return await component_interactions.choose(
            self._sim, app, message, user, values, placeholder=placeholder, custom_id=custom_id
        )

    async def forge_component(
        self, app: Application, message: Message, user: User, custom_id: str, **kw: Any
    ) -> Interaction:
        """A component interaction with a ``custom_id`` the message need not have."""
        return await component_interactions.forge_component(
            self._sim, app, message, user, custom_id, **kw
        )

    async def submit_modal(
        self, opened_by: Interaction, values: dict[str, str], **kw: Any
    ) -> Interaction:
        """Submit the modal the bot answered ``opened_by`` with."""
        return await component_interactions.submit_modal(self._sim, opened_by, values, **kw)

    async def wait_modal(self, ix: Interaction, timeout_s: float = 10.0) -> dict[str, Any]:
        """The modal the bot answers ``ix`` with."""
        try:
            return await self._sim.wait_until(lambda: ix.modal, timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"no modal in answer to {ix.name!r} (response type {ix.response_type}, "
                f"messages={[m.text for m in ix.messages]})"
            ) from None

    async def autocomplete(
        self,
        app: Application,
        channel: Channel,
        user: User,
        name: str,
        options: dict[str, Any],
        focused: str,
    ) -> list[dict[str, Any]]:
        """The choices the bot offers while ``user`` types into ``/name``'s ``focused``."""
        return await component_interactions.autocomplete(
            self._sim, app, channel, user, name, options, focused
        )

    async def create_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        """A new role of ``guild`` (GUILD_ROLE_CREATE to the connected bots)."""
        role = Role(snowflake(), name, permissions)
        guild.roles[role.id] = role
        for session in list(self._sim.sessions):
            if session.ready and session.owns(guild.id):
                await session.dispatch(
                    "GUILD_ROLE_CREATE",
                    {"guild_id": str(guild.id), "role": role.payload(len(guild.roles))},
                )
        self._sim.notify()
        return role

    async def open_channel(
        self, guild: Guild, name: str, overwrites: dict[int, tuple[int, int]] | None = None
    ) -> Channel:
        """A new text channel of ``guild`` (CHANNEL_CREATE to the connected bots);
        ``overwrites``: target id (role or member) -> (allow, deny)."""
        channel = self._sim.create_channel(guild, name, overwrites)
        role_ids = {guild.everyone.id, *guild.roles}
        for session in list(self._sim.sessions):
            if session.ready and session.owns(guild.id):
                await session.dispatch(
                    "CHANNEL_CREATE", {**channel.payload(role_ids), "guild_id": str(guild.id)}
                )
        self._sim.notify()
        return channel

    async def delete_channel(self, channel: Channel) -> None:
        """Delete a server's channel (CHANNEL_DELETE to the connected bots); its messages
        go with it."""
        guild = self._sim.guilds[channel.guild_id]
        guild.channels.pop(channel.id, None)
        self._sim.channels.pop(channel.id, None)
        for message in self._sim.messages.values():
            if message.channel_id == channel.id:
                message.deleted = True
        for session in list(self._sim.sessions):
            if session.ready and session.owns(guild.id):
                await session.dispatch("CHANNEL_DELETE", channel.payload())
        self._sim.notify()

    def give_role(self, guild: Guild, user: User, role: Role, on: bool = True) -> None:
        """Give ``user`` the role (``on=False``: take it away)."""
        roles = guild.members.setdefault(user.id, [])
        if on and role.id not in roles:
            roles.append(role.id)
        elif not on and role.id in roles:
            roles.remove(role.id)

    async def slash(
        self,
        app: Application,
        channel: Channel,
        user: User,
        name: str,
        options: dict[str, Any] | None = None,
    ) -> Interaction:
        """Invoke ``/name`` as ``user`` in ``channel`` the way the Discord client would."""
        guild = self._sim.guilds[channel.guild_id]
        top, _, sub = name.partition(" ")  # "forget label": a subcommand of /forget
        cmd = visible_command(app, guild, channel, user, top, 1)

        def permissions_in(target: Channel) -> int:
            return guild.channel_permissions(user.id, target)

        if sub:
            spec = next(
                (o for o in cmd.data.get("options", []) if o.get("type") == 1 and o["name"] == sub),
                None,
            )
            if spec is None:
                raise CommandRejected(f"/{top} has no subcommand {sub!r}")
            opts, resolved = build_options(replace(cmd, data=spec), options or {}, permissions_in)
            opts = [{"type": 1, "name": sub, "options": opts}]
        else:
            opts, resolved = build_options(cmd, options or {}, permissions_in)
        data: dict[str, Any] = {"id": str(cmd.id), "name": top, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        return await self._dispatch_interaction(app, guild, channel, user, cmd, data)

    async def message_command(
        self, app: Application, channel: Channel, user: User, name: str, target: Message
    ) -> Interaction:
        """Use the message context-menu command ``name`` on ``target``."""
        guild = self._sim.guilds[channel.guild_id]
        cmd = visible_command(app, guild, channel, user, name, 3)
        data = {
            "id": str(cmd.id),
            "name": name,
            "type": 3,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): target.payload()}},
        }
        return await self._dispatch_interaction(app, guild, channel, user, cmd, data)

    async def wait_response(
        self,
        ix: Interaction,
        *,
        count: int = 1,
        predicate: Callable[[Message], bool] | None = None,
        timeout_s: float = 15.0,
    ) -> Message:
        """The ``count``-th final (not "thinking") visible message of ``ix`` matching
        ``predicate``."""

        def find() -> Message | None:
            msgs = [m for m in ix.final if predicate is None or predicate(m)]
            return msgs[count - 1] if len(msgs) >= count else None

        try:
            return await self._sim.wait_until(find, timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"no response to /{ix.name} within {timeout_s} s (late={ix.late}, "
                f"messages={[m.text for m in ix.messages]}, rejected={self._sim.rejected[-3:]})"
            ) from None

    # --- internals ---------------------------------------------------------------------
    async def _dispatch_interaction(
        self,
        app: Application,
        guild: Guild,
        channel: Channel,
        user: User,
        cmd: Command,
        data: dict[str, Any],
    ) -> Interaction:
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        ix_id, token = snowflake(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload = {
            "id": str(ix_id),
            "application_id": str(app.id),
            "type": 2,
            "token": token,
            "version": 1,
            **component_interactions.guild_context(app, guild, channel, user),
            "attachment_size_limit": ATTACHMENT_LIMIT,
            "data": data,
        }
        from tests.discord_sim.simulator import Interaction

        ix = Interaction(ix_id, token, app, guild.id, channel.id, user, cmd.name, payload)
        self._sim.interactions[ix_id] = ix
        self._sim.interactions_by_token[token] = ix
        session = self._sim.session_for(app, guild.id)
        if session is None:
            raise RuntimeError(f"{app.user.name} is not connected")
        ix.created = time.monotonic()
        await session.dispatch("INTERACTION_CREATE", payload)
        return ix
