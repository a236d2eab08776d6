"""A server's data lifecycle through the simulator: /forget mine|label|all (with its
confirmation), the purge of a server the bot left (after the retention period only; the
other server keeps everything), and the removals the retention task finishes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bot.db.removals import BACKUP_MARKER
from tests.bot.tenancy_world import Servers, poll
from tests.discord_sim.components import find_component

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_forget_mine_label_and_all_with_confirmation(servers: Servers):
    s = servers
    store = s.bot.bot.store
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    s.a.commands_open_to_everyone = True
    try:
        await s.teach(s.operator, s.a_chan, "rose", 1)  # taught by another user
    finally:
        s.a.commands_open_to_everyone = False
    await s.teach(s.admin_b, s.b_chan, "rose", 0)
    mine = await s.run(s.admin_a, s.a_chan, "forget mine")
    assert mine.content.startswith("Forgot the 1 image(s) you taught")
    assert [r.user_id for r in await store.guild(s.a.id).taught()] == [s.operator.id]
    nothing = await s.run(s.member, s.a_chan, "forget mine")
    assert nothing.content == "You have no taught images on this server."
    missing = await s.run(s.admin_a, s.a_chan, "forget label", label="tulip")
    assert missing.content == "This server has no taught images labelled **tulip**."
    assert (await s.retrain(s.admin_a, s.a_chan)).embeds
    await s.run(s.admin_a, s.a_chan, "autoclassify", mode="on")

    ask = await s.run(s.admin_a, s.a_chan, "forget all")
    assert ask.ephemeral and "cannot be undone" in ask.content
    cancel = await s.bot.sim.press_button(s.bot.app, ask, s.admin_a, "Cancel")
    await s.bot.sim.wait_until(lambda: ask.content == "Nothing was forgotten.")
    assert cancel.response_type == 7 and ask.components == []
    assert len(await store.guild(s.a.id).taught()) == 1

    ask = await s.run(s.admin_a, s.a_chan, "forget all")
    # only its admin sees an ephemeral message: a modified client forges the press
    confirm = find_component(ask.components, label="Forget everything")
    stranger = await s.bot.sim.forge_component(s.bot.app, ask, s.member, confirm["custom_id"])
    denied = await s.bot.sim.wait_response(stranger)
    assert denied.content == "Only the administrator who asked can confirm this."
    await s.bot.sim.press_button(s.bot.app, ask, s.admin_a, "Forget everything")
    await s.bot.sim.wait_until(lambda: ask.content.startswith("Forgotten:"))
    assert ask.content.startswith("Forgotten: 1 taught image(s), 1 model(s)")
    a = store.guild(s.a.id)
    assert await a.taught() == [] and await a.current_model() is None
    assert await a.watched_channels() == set() and not a.folder.exists()
    b = store.guild(s.b.id)
    assert len(await b.taught()) == 1 and all(r.path.is_file() for r in await b.taught())
    answer = await s.classify(s.a_chan)  # back on the default model
    assert answer.embeds[0]["footer"]["text"] == "model scripted-1"


@pytest.mark.parametrize(
    "servers",
    [{"GUILD_DATA_RETENTION_DAYS": "0", "RETENTION_CHECK_INTERVAL_S": "0.2"}],
    indirect=True,
)
async def test_data_of_a_server_the_bot_left_is_purged(servers: Servers):
    s = servers
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.teach(s.admin_b, s.b_chan, "rose", 0)
    a = s.bot.bot.store.guild(s.a.id)
    folder = a.folder
    assert folder.exists()
    await s.bot.sim.remove_bot(s.bot.app, s.a)
    await poll(lambda: not folder.exists())
    assert await a.taught() == []
    assert len(await s.bot.bot.store.guild(s.b.id).taught()) == 1


async def test_a_server_that_left_recently_keeps_its_data(servers: Servers):
    s = servers
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.bot.sim.remove_bot(s.bot.app, s.a)
    a = s.bot.bot.store.guild(s.a.id)
    await poll(lambda: s.bot.bot.get_guild(s.a.id) is None)
    await poll(lambda: a.left_at())
    assert await s.bot.bot.get_cog("DataCog").purge_once() == 0  # type: ignore[union-attr]
    assert len(await a.taught()) == 1


@pytest.mark.parametrize("servers", [{"RETENTION_CHECK_INTERVAL_S": "0.2"}], indirect=True)
async def test_removals_a_killed_backup_held_back_are_finished_by_the_retention_task(
    servers: Servers,
):
    """A forget while a backup copies holds its file deletions back; the backup is killed
    (its marker stays, naming a dead process): the retention task finishes them without
    waiting for the next forget or start."""
    s = servers
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    [record] = await s.bot.bot.store.guild(s.a.id).taught()
    marker = s.bot.settings.data_dir / BACKUP_MARKER
    backup = await asyncio.create_subprocess_exec("sleep", "120")  # stands for `db backup`
    try:
        marker.write_text(f"pid={backup.pid} host={socket.gethostname()}\n")
        forgot = await s.run(s.admin_a, s.a_chan, "forget label", label="rose")
        assert forgot.content.startswith("Forgot 1 taught image(s)")
        await asyncio.sleep(0.6)  # three rounds of the task while the backup runs
        assert record.path.is_file()  # held back: the backup may still copy it
    finally:
        backup.kill()
        await backup.wait()
    await poll(lambda: not record.path.exists())
    marker.unlink()
