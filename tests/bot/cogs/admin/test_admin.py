"""Admin commands (/status, /retrain, and who may use the admin commands)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import BackendUnavailable
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import (
    NEW_LABEL_SOURCE,
    TINY_LABELS,
    RunningBot,
    World,
    flower_bytes,
    images_dir,
    launch_scripted,
    taught,
)
from tests.discord_sim import CommandRejected, Interaction, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN_COMMANDS = ("status", "retrain", "teach", "autoclassify", "rule", "label", "settings")
DENIED = "This command is only for server administrators and the bot's owners."


async def test_admin_commands_are_synced_with_administrator_default_permission(
    main_bot: RunningBot,
):
    cmds = main_bot.app.guild_commands[main_bot.world.guild.id]
    for name in ADMIN_COMMANDS:
        assert cmds[(name, 1)].data["default_member_permissions"] == "8", name
    for name, ctype in (("classify", 1), ("labels", 1), ("Classify image", 3)):
        assert cmds[(name, ctype)].data.get("default_member_permissions") is None


async def test_non_admins_do_not_see_admin_commands(main_bot: RunningBot):
    w = main_bot.world
    for name in ("status", "retrain"):
        with pytest.raises(CommandRejected, match="hidden"):
            await main_bot.slash(w.alice, name)


async def test_explicit_check_refuses_non_admins_when_the_server_opens_commands(
    main_bot: RunningBot,
):
    """Server admins can open admin commands to everyone; the bot still refuses."""
    w = main_bot.world
    w.guild.commands_open_to_everyone = True
    try:
        att = w.sim.upload(flower_bytes("daisy"), "d.jpg")
        calls = [
            ("status", {}),
            ("retrain", {}),
            ("teach images", {"label": "daisy", "image": att}),
            ("autoclassify", {"mode": "on"}),
        ]
        for name, options in calls:
            ix = await main_bot.slash(w.alice, name, **options)
            msg = await main_bot.reply(ix)
            assert msg.ephemeral and msg.content == DENIED, (name, msg.text)
        # ADMIN_USER_IDS: carol is a plain member but one of the bot's owners
        ix = await main_bot.slash(w.carol, "status")
        msg = await main_bot.reply(ix)
        assert msg.ephemeral
        assert [e["title"] for e in msg.embeds] == ["This server: Test server", "Classifier status"]
    finally:
        w.guild.commands_open_to_everyone = False
    assert not await taught(main_bot)


async def test_status_for_an_operator_adds_the_operator_wide_figures(main_bot: RunningBot):
    w = main_bot.world
    w.guild.commands_open_to_everyone = True  # carol (ADMIN_USER_IDS) is a plain member
    try:
        msg = await main_bot.reply(await main_bot.slash(w.carol, "status"))
    finally:
        w.guild.commands_open_to_everyone = False
    assert msg.ephemeral
    fields = {f["name"]: f["value"] for f in msg.embeds[1]["fields"]}
    assert fields["Backend"].startswith(main_bot.bot.backend.kind)
    assert fields["Model"] != "none"
    labels_field = next(k for k in fields if k.startswith("Labels"))
    for label in TINY_LABELS:
        assert label in fields[labels_field]
    for name in ("Accuracy", "Queue", "Served", "Uptime", "Watched channels", "All servers"):
        assert name in fields


async def test_status_for_a_server_admin_shows_only_that_server(main_bot: RunningBot):
    w = main_bot.world
    msg = await main_bot.reply(await main_bot.slash(w.admin, "status"))
    assert msg.ephemeral and len(msg.embeds) == 1
    fields = {f["name"]: f["value"] for f in msg.embeds[0]["fields"]}
    assert fields["Quotas"].startswith("labels ")
    for name in ("Model", "Last retrain", "Default dataset", "Watched channels"):
        assert name in fields
    for operator_only in ("Backend", "Queue", "Instances", "GLM spent", "All servers"):
        assert operator_only not in fields


async def test_teach_then_retrain_learns_a_new_label(main_bot: RunningBot):
    w = main_bot.world
    data_dir = main_bot.settings.data_dir
    new_label = "bluebell"
    w.guild.commands_open_to_everyone = True  # so that carol (ADMIN_USER_IDS) sees /teach
    try:
        for i in range(5):
            att = w.sim.upload(flower_bytes(NEW_LABEL_SOURCE, i), f"b{i}.jpg")
            user = w.admin if i % 2 else w.carol
            ix = await main_bot.slash(user, "teach images", label=" BlueBell ", image=att)
            msg = await main_bot.reply(ix)
            assert msg.ephemeral and f"Learned **{new_label}**" in msg.content, msg.content
    finally:
        w.guild.commands_open_to_everyone = False
    # again: already known
    att = w.sim.upload(flower_bytes(NEW_LABEL_SOURCE, 0), "again.jpg")
    msg = await main_bot.reply(
        await main_bot.slash(w.admin, "teach images", label=new_label, image=att)
    )
    assert "already had this image" in msg.content

    records = [r for r in await taught(main_bot) if r.label == new_label]
    assert len(records) == 5
    assert all(r.path.parent == images_dir(main_bot) and r.path.is_file() for r in records)
    assert all(r.path.suffix == ".jpg" and r.path.stem == r.sha256 for r in records)
    assert {r.user_id for r in records} == {w.admin.id, w.carol.id}
    assert all(r.added_at.tzinfo is not None for r in records)

    before = (await main_bot.bot.backend.status()).model_id
    ix = await main_bot.slash(w.admin, "retrain")
    second = await main_bot.slash(w.owner, "retrain")
    busy = await main_bot.reply(second)
    assert busy.ephemeral and "already running" in busy.content

    def finished(m: Message) -> bool:
        return bool(m.embeds) and m.embeds[0].get("title") == "Retraining finished"

    msg = await main_bot.reply(ix, predicate=finished, timeout_s=240)
    assert not msg.ephemeral and ix.response_type == 4
    progress = [content for _, content, _, _ in msg.history if content.startswith("Retraining")]
    assert len(progress) >= 2, "progress is shown by editing the message"
    assert len(ix.messages) == 1, "one message, edited in place"
    fields = {f["name"]: f["value"] for f in msg.embeds[0]["fields"]}
    assert (
        fields["Accuracy (cross-validated)"].endswith(("%", ")"))
        or "%" in fields["Accuracy (cross-validated)"]
    )
    assert fields["Images"].startswith(f"{len(TINY_LABELS) * 8 + 5} ")
    # what the server can expect, from the retrain's cross-validation (issue 18)
    for name in ("Right on its labels", "Own photos answered unknown", "Calibration error"):
        assert name in fields, fields
    right = float(fields["Right on its labels"].rstrip("%"))
    assert 0.0 <= right <= 100.0
    assert f"{new_label} " in fields["Recall per label (weakest first)"]
    hint = f"add about 5 more photos of *{new_label}* (only 5 photos)"
    assert hint in fields["To improve"], fields["To improve"]
    png = next(a for a in msg.attachments if a.filename == "confusion.png")
    assert png.data is not None and png.data.startswith(b"\x89PNG")
    assert msg.embeds[0]["image"]["url"] == png.url

    status = await main_bot.bot.backend.status()
    assert status.model_id == before, "a server's retrain leaves the default model alone"
    assert new_label not in status.labels
    model = await main_bot.bot.store.guild(w.guild.id).current_model()
    assert model is not None and new_label in model.labels and model.path.is_file()
    assert model.path.parent == data_dir / "guilds" / str(w.guild.id) / "models"
    ix = await main_bot.slash(w.alice, "labels")
    assert new_label in (await main_bot.reply(ix)).embeds[0]["description"]
    status = await main_bot.reply(await main_bot.slash(w.admin, "status"))
    status_fields = {f["name"]: f["value"] for f in status.embeds[0]["fields"]}
    for name in ("Right on its labels", "Own photos answered unknown", "To improve"):
        assert status_fields[name] == fields[name], name  # /status says what /retrain said
    flower = w.sim.upload(flower_bytes(NEW_LABEL_SOURCE, 9), "bb.jpg")
    answer = await main_bot.reply(await main_bot.slash(w.alice, "classify", image=flower))
    assert answer.embeds[0]["footer"]["text"] == f"model {model.model_id}"


@pytest_asyncio.fixture(loop_scope="session")
async def retrain_bot(
    world: World, tmp_path: Path
) -> AsyncIterator[tuple[RunningBot, ScriptedBackend]]:
    running, backend = await launch_scripted(
        world, "RetrainBot", tmp_path, {"PROGRESS_INTERVAL_S": "0.1"}
    )
    backend.retrain_steps, backend.retrain_step_s = 4, 0.3
    yield running, backend
    await running.stop()


def is_report(m: Message) -> bool:
    return bool(m.embeds) and m.embeds[0].get("title") == "Retraining finished"


async def retrain_and_wait_in_channel(running: RunningBot) -> tuple[Interaction, Message]:
    """Run /retrain; its report must come as a plain channel message."""
    w = running.world
    ix = await running.slash(w.admin, "retrain")
    report = await w.sim.wait_bot_message(
        lambda m: m.author.id == running.app.user.id and m.interaction_id is None and is_report(m)
    )
    return ix, report


async def test_retrain_continues_in_the_channel_when_the_token_is_about_to_expire(
    retrain_bot, monkeypatch: pytest.MonkeyPatch
):
    running, _ = retrain_bot
    # the module this bot loaded (a stopped bot's unload drops its extensions' modules)
    from bot.cogs.admin import _retrain_message

    monkeypatch.setattr(_retrain_message, "INTERACTION_EDIT_WINDOW_S", 0.45)
    ix, report = await retrain_and_wait_in_channel(running)
    progress = [content for _, content, _, _ in report.history if content.startswith("Retrain")]
    assert progress, "progress continues in the channel message"
    assert report.channel_id == running.world.general.id and not report.ephemeral
    [original] = ix.messages
    assert original.content.startswith("Retraining") and not original.embeds


async def test_retrain_continues_in_the_channel_when_the_token_has_expired(
    retrain_bot, monkeypatch: pytest.MonkeyPatch
):
    """Discord refuses the edits (401 Invalid Webhook Token): the bot switches over."""
    running, _ = retrain_bot
    sim = running.world.sim
    monkeypatch.setattr(sim, "interaction_token_lifetime_s", 0.45)
    ix, report = await retrain_and_wait_in_channel(running)
    assert any(r[2] == 401 and r[3]["code"] == 50027 for r in sim.rejected)
    assert report.channel_id == running.world.general.id
    [original] = ix.messages
    assert not original.embeds and not ix.followups


async def test_a_failed_retrain_says_why_once(retrain_bot):
    running, backend = retrain_bot
    backend.retrain_steps = 0
    backend.fail_with = BackendUnavailable("The trainer ran out of memory.")
    ix = await running.slash(running.world.admin, "retrain")
    failed = await running.reply(ix, predicate=lambda m: "failed" in m.content)
    assert failed.content == "❌ Retraining failed: The trainer ran out of memory."
    assert not failed.ephemeral
    with pytest.raises(TimeoutError):  # no private follow-up repeating it
        await running.sim.wait_until(lambda: ix.followups, timeout_s=1)
