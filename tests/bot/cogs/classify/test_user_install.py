"""User installs end to end: /classify and "Classify image" in DMs, group DMs and servers
the bot is not in, through the real bot (real LocalBackend, the default model) and the
simulated Discord client's rules for user-installed apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.conftest import main_env
from tests.bot.harness import (
    TINY_LABELS,
    RunningBot,
    World,
    data_dir_with_model,
    flower_bytes,
    launch,
)
from tests.discord_sim import EPHEMERAL, CommandRejected, Message
from tests.discord_sim.installs import (
    BOT_DM,
    GUILD,
    PRIVATE_CHANNEL,
    user_install_interaction,
)
from tests.discord_sim.model import USE_EXTERNAL_APPS, snowflake

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def global_bot(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningBot]:
    """A bot whose commands are global (user installs only see global commands)."""
    app = world.sim.create_application("UserInstallable")
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "user-install-data")
    env = main_env(world, data_dir, tiny_dataset)
    del env["DEV_GUILD_ID"]
    running = await launch(world, app, env)
    yield running
    await running.stop()


def flower(bot: RunningBot, label: str = "tulip", index: int = 50, channel_id: int = 0):
    data = flower_bytes(label, index)
    return bot.sim.upload(data, f"{label}.jpg", content_type="image/jpeg", channel_id=channel_id)


def foreign_guild(world: World, name: str, external_apps: bool):
    """A server none of the simulated bots is a member of."""
    sim = world.sim
    guild = sim.create_guild(name, sim.create_user(f"{name}-owner"))
    for app in sim.apps_by_token.values():
        guild.members.pop(app.user.id, None)
    if not external_apps:
        guild.everyone.permissions &= ~USE_EXTERNAL_APPS
    channel = sim.create_channel(guild, "chat")
    member = sim.create_user(f"{name}-member")
    sim.add_member(guild, member)
    return guild, channel, member


async def test_only_classify_and_the_menu_are_user_installable(global_bot: RunningBot):
    commands = global_bot.app.global_commands
    for key in (("classify", 1), ("Classify image", 3)):
        data = commands[key].data
        assert sorted(data["integration_types"]) == [0, 1], data
        assert sorted(data["contexts"]) == [0, 1, 2], data
    user = global_bot.sim.create_user("dm-admin-try")
    with pytest.raises(CommandRejected, match="user install"):
        await user_install_interaction(
            global_bot.sim, global_bot.app, user, "labels", context=BOT_DM
        )


@pytest.mark.parametrize("context", [BOT_DM, PRIVATE_CHANNEL])
async def test_classify_in_dms_uses_the_default_model(global_bot: RunningBot, context: int):
    sim, user = global_bot.sim, global_bot.sim.create_user(f"dm-user-{context}")
    ix = await user_install_interaction(
        sim,
        global_bot.app,
        user,
        "classify",
        context=context,
        options={"image": flower(global_bot)},
    )
    assert "guild_id" not in ix.payload and "member" not in ix.payload
    assert ix.payload["authorizing_integration_owners"] == {"1": str(user.id)}
    reply = await global_bot.reply(ix)
    title = reply.embeds[0]["title"]
    assert any(label in title.lower() for label in TINY_LABELS), title
    assert not reply.ephemeral  # a DM reply may be public (it is the user's own DM)


async def test_menu_in_a_dm_on_a_message_with_images(global_bot: RunningBot):
    sim, user = global_bot.sim, global_bot.sim.create_user("dm-menu")
    dm_id = snowflake()
    target = Message(
        snowflake(),
        dm_id,
        None,
        user,
        "look",
        attachments=[flower(global_bot, "daisy", 51, dm_id), flower(global_bot, "sunflower", 52)],
    )
    target.snapshot()
    ix = await user_install_interaction(
        sim,
        global_bot.app,
        user,
        "Classify image",
        context=BOT_DM,
        target=target,
        dm_channel_id=dm_id,
    )
    reply = await global_bot.reply(ix)
    assert len(reply.embeds) == 2, reply.text


async def test_a_broken_image_in_a_dm_gets_a_private_reason(global_bot: RunningBot):
    sim, user = global_bot.sim, global_bot.sim.create_user("dm-broken")
    junk = sim.upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "broken.png", content_type="image/png")
    ix = await user_install_interaction(
        sim, global_bot.app, user, "classify", context=BOT_DM, options={"image": junk}
    )
    reply = await global_bot.reply(ix)
    assert (reply.ephemeral and "broken.png" not in reply.text.lower()) or reply.text
    assert "sorry, something went wrong" not in reply.text.lower(), reply.text


@pytest.mark.parametrize("external_apps", [True, False])
async def test_user_install_in_a_server_without_the_bot(
    global_bot: RunningBot, external_apps: bool
):
    w = global_bot.world
    guild, channel, member = foreign_guild(w, f"elsewhere-{external_apps}", external_apps)
    ix = await user_install_interaction(
        w.sim,
        global_bot.app,
        member,
        "classify",
        context=GUILD,
        guild=guild,
        channel=channel,
        options={"image": flower(global_bot, "sunflower", 53)},
    )
    reply = await global_bot.reply(ix)
    assert any(label in reply.embeds[0]["title"].lower() for label in TINY_LABELS)
    # where members may not use external apps, the bot asks for ephemeral replies itself
    # (Discord would force it: forced_private counts the replies it had to make private)
    assert reply.ephemeral == (not external_apps)
    assert ix.forced_private == 0
    assert bool(ix.original and ix.original.flags & EPHEMERAL) == (not external_apps)
