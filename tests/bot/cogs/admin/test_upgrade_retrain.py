"""After an upgrade that changes the features, a server's model is retrained by the bot
itself, once, when it starts: the real bot on the simulator, a real SQLite store and real
model files (the backend is scripted: what is tested is who retrains what)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.cogs.admin import AutoRetrainCog
from provider.artifact import save_model
from provider.features import get_extractor
from tests.bot.harness import RunningBot, World, launch_scripted, png_bytes

pytestmark = pytest.mark.asyncio(loop_scope="session")

PREVIOUS_CNN = {"name": "cnn", "version": "lite0-ort-ms1-draft256", "dim": 1984}
ABSENT_GUILD = 4242  # a server whose data is kept but that this bot is not in


async def install_model(running: RunningBot, guild_id: int, extractor: dict[str, object]) -> str:
    """A real model file of ``extractor``'s features, registered as the server's current."""
    scope = running.bot.store.guild(guild_id)
    path = scope.models_dir / f"{extractor['version']}.model"
    labels = ["daisy", "rose"]
    art = save_model({"fitted": True}, None, {"labels": labels, "extractor": extractor}, path)
    await scope.register_model(art.model_id, path, labels, {})
    return art.model_id


async def upgrade_done(running: RunningBot) -> Any:
    # the extension's own module object: not the class imported here (discord.py loads
    # extensions apart), so no isinstance
    cog: Any = running.bot.get_cog("AutoRetrainCog")
    assert cog is not None and type(cog).__name__ == AutoRetrainCog.__name__
    for _ in range(200):  # on_ready starts it
        if cog.upgrade is not None:
            break
        await asyncio.sleep(0.05)
    assert cog.upgrade is not None, "the stale-model check did not start"
    await asyncio.wait_for(asyncio.shield(cog.upgrade), 30)
    return cog


async def test_models_this_version_cannot_use_are_retrained_once_at_start(
    world: World, tmp_path: Path
):
    gid = world.guild.id
    running, backend = await launch_scripted(world, "UpgradeBot", tmp_path)
    app = running.app
    try:
        await upgrade_done(running)
        scope = running.bot.store.guild(gid)
        for i, label in enumerate(("daisy", "daisy", "rose", "rose")):
            await scope.add_taught(
                label, png_bytes(colour=f"#0000{i + 1:02x}"), "png", user_id=5, user_name="m"
            )
        ext = get_extractor("cnn")
        current = await install_model(
            running, gid, {"name": ext.name, "version": ext.version, "dim": ext.dim}
        )
        absent = await install_model(running, ABSENT_GUILD, PREVIOUS_CNN)
    finally:
        await running.stop()

    # a restart with a usable model: nothing is retrained
    running, backend = await launch_scripted(world, "UpgradeBot", tmp_path, app=app)
    try:
        await upgrade_done(running)
        assert backend.trained == []
        assert (await running.bot.store.guild(gid).current_model()).model_id == current
        stale = await install_model(running, gid, PREVIOUS_CNN)
    finally:
        await running.stop()

    # the upgrade: the server's current model was trained on the previous features
    running, backend = await launch_scripted(world, "UpgradeBot", tmp_path, app=app)
    try:
        cog = await upgrade_done(running)
        [training_set] = backend.trained  # one retrain: this server's
        assert training_set is not None
        assert training_set.out_dir.parent.name == str(gid)
        assert sorted(e.label for e in training_set.examples) == ["daisy", "daisy", "rose", "rose"]
        scope = running.bot.store.guild(gid)
        model = await scope.current_model()
        assert model is not None and model.model_id not in (stale, current)
        retrain = await scope.last_retrain()
        assert retrain is not None and retrain.outcome == "ok" and retrain.detail == model.model_id
        assert f"model {model.model_id} (after an upgrade)" in (cog.describe(gid) or "")
        # the server the bot is not in keeps its data untouched, for when it comes back
        absent_model = await running.bot.store.guild(ABSENT_GUILD).current_model()
        assert absent_model is not None and absent_model.model_id == absent
        assert len(await scope.taught()) == 4  # nothing taught is lost
    finally:
        await running.stop()
