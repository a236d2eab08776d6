"""Two servers, one bot: nothing one server does changes another's answers, labels,
channels, counts or /status; quotas and fairness. (/forget and retention:
tests/bot/cogs/data; /model rollback and include_default: tests/bot/cogs/admin.)"""

from __future__ import annotations

import pytest

from bot.core.permissions import OPERATORS_ONLY
from golem_backend import BackendBusy, BackendTimeout
from tests.bot.harness import flower_bytes
from tests.bot.tenancy_world import Servers, answer, fields

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_one_server_teaching_and_retraining_changes_nothing_for_another(servers: Servers):
    s = servers
    before_b = [await s.classify(s.b_chan), await s.run(s.member, s.b_chan, "labels")]
    status_b = fields(await s.run(s.admin_b, s.b_chan, "status"))
    for i in range(3):
        msg = await s.teach(s.admin_a, s.a_chan, "bluebell", i)
        assert msg.content.startswith("Learned **bluebell**"), msg.content
    on = await s.run(s.admin_a, s.a_chan, "autoclassify", mode="on")
    assert on.content.startswith("I'll reply")
    report = await s.retrain(s.admin_a, s.a_chan)
    assert report.embeds[0]["title"] == "Retraining finished", report.text
    [training_set] = s.backend.trained
    assert training_set is not None and len(training_set.examples) == 3
    assert training_set.out_dir == s.bot.settings.data_dir / "guilds" / str(s.a.id) / "models"

    # A answers with its own model and knows its label
    answer_a = await s.classify(s.a_chan)
    model_a = await s.bot.bot.store.guild(s.a.id).current_model()
    assert model_a is not None
    assert answer_a.embeds[0]["title"].startswith("bluebell")
    assert answer_a.embeds[0]["footer"]["text"] == f"model {model_a.model_id}"
    assert "bluebell" in (await s.run(s.member, s.a_chan, "labels")).embeds[0]["description"]
    status_a = fields(await s.run(s.admin_a, s.a_chan, "status"))
    assert status_a["Taught labels (1)"] == "bluebell (3)"
    assert status_a["Model"].startswith(model_a.model_id)
    assert status_a["Quotas"].startswith("labels 1/50\nimages 3/2000")
    assert status_a["Watched channels"] == "1"

    # auto-replies: in A's watched channel with A's model; B's channel is not watched
    sim = s.bot.sim
    posted = await sim.post_message(
        s.a_chan,
        s.member,
        "",
        [sim.upload(flower_bytes("tulip", 5), "p.jpg", content_type="image/jpeg")],
    )
    auto = await sim.wait_bot_message(lambda m: m.reference_id == posted.id)
    assert auto.embeds[0]["footer"]["text"] == f"model {model_a.model_id}"
    ignored = await sim.post_message(
        s.b_chan,
        s.member,
        "",
        [sim.upload(flower_bytes("tulip", 6), "p.jpg", content_type="image/jpeg")],
    )

    # B: the same answers, labels and /status as before
    after_b = [await s.classify(s.b_chan), await s.run(s.member, s.b_chan, "labels")]
    assert [answer(m) for m in after_b] == [answer(m) for m in before_b]
    assert fields(await s.run(s.admin_b, s.b_chan, "status")) == status_b
    assert status_b["Taught labels (0)"] == "none yet"
    assert await s.bot.bot.store.guild(s.b.id).watched_channels() == set()
    assert not [m for m in sim.bot_messages() if m.reference_id == ignored.id]
    # the backend was told whose request each one was
    tenants = {t for _, t in s.backend.requests}
    assert tenants == {f"guild:{s.a.id}", f"guild:{s.b.id}"}
    assert all(m is None for m, t in s.backend.requests if t == f"guild:{s.b.id}")


async def test_the_default_model_is_retrained_only_by_operators(servers: Servers):
    s = servers
    refused = await s.run(s.admin_a, s.a_chan, "retrain", scope="default")
    assert refused.ephemeral and refused.content == OPERATORS_ONLY
    assert s.backend.trained == []
    s.a.commands_open_to_everyone = True  # the operator is a plain member here
    try:
        report = await s.retrain(s.operator, s.a_chan, scope="default")
    finally:
        s.a.commands_open_to_everyone = False
    assert report.embeds[0]["title"] == "Retraining finished"
    assert s.backend.trained == [None]  # the default model: no server training set
    assert await s.bot.bot.store.guild(s.a.id).current_model() is None


async def test_operators_see_operator_wide_figures_server_admins_do_not(servers: Servers):
    s = servers
    admin = await s.run(s.admin_a, s.a_chan, "status")
    assert [e["title"] for e in admin.embeds] == [f"This server: {s.a.name}"]
    s.a.commands_open_to_everyone = True
    try:
        op = await s.run(s.operator, s.a_chan, "status")
    finally:
        s.a.commands_open_to_everyone = False
    assert [e["title"] for e in op.embeds] == [f"This server: {s.a.name}", "Classifier status"]
    assert "All servers" in fields(op, 1)


@pytest.mark.parametrize(
    "servers", [{"GUILD_MAX_LABELS": "2", "GUILD_MAX_TAUGHT_IMAGES": "3"}], indirect=True
)
async def test_quotas_are_per_server_and_say_how_to_free_space(servers: Servers):
    s = servers
    await s.teach(s.admin_a, s.a_chan, "one", 0)
    await s.teach(s.admin_a, s.a_chan, "two", 1)
    msg = await s.teach(s.admin_a, s.a_chan, "three", 2)
    assert msg.ephemeral and msg.content == (
        "This server already has 2 labels, the limit is 2. "
        "Remove one with `/forget label:` to add another."
    )
    await s.teach(s.admin_a, s.a_chan, "two", 3)
    msg = await s.teach(s.admin_a, s.a_chan, "two", 4)
    assert "3 taught images, the limit is 3" in msg.content and "/forget" in msg.content
    assert (await s.teach(s.admin_b, s.b_chan, "three", 2)).content.startswith("Learned")
    freed = await s.run(s.admin_a, s.a_chan, "forget label", label="one")
    assert freed.content.startswith("Forgot 1 taught image(s) of **one**")
    assert (await s.teach(s.admin_a, s.a_chan, "three", 2)).content.startswith("Learned")


@pytest.mark.parametrize("servers", [{"GUILD_MAX_RETRAINS_PER_HOUR": "1"}], indirect=True)
async def test_retrain_quota(servers: Servers):
    s = servers
    assert (await s.retrain(s.admin_a, s.a_chan)).embeds
    msg = await s.run(s.admin_a, s.a_chan, "retrain")
    assert msg.ephemeral and "retrained 1 times in the last hour, the limit is 1" in msg.content
    assert (await s.retrain(s.admin_b, s.b_chan)).embeds  # B has its own


async def test_a_server_model_whose_file_is_gone_falls_back_to_the_default(servers: Servers):
    s = servers
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    model = await s.bot.bot.store.guild(s.a.id).current_model()
    assert model is not None
    model.path.unlink()
    answer = await s.classify(s.a_chan)
    assert answer.embeds[0]["footer"]["text"] == "model scripted-1"


async def test_teach_refuses_what_it_cannot_verify_and_stores_nothing(servers: Servers):
    """Issue 9 finding 5."""
    s = servers
    s.backend.fail_with = BackendBusy("The classifier is busy.")
    msg = await s.teach(s.admin_a, s.a_chan, "rose", 0)
    assert msg.content == (
        "I couldn't check this image (The classifier is busy.), so I didn't store it. "
        "Please try again in a moment."
    )
    s.backend.fail_with = BackendTimeout("The classifier took too long.")
    msg = await s.teach(s.admin_a, s.a_chan, "rose", 1)
    assert "so I didn't store it" in msg.content
    scope = s.bot.bot.store.guild(s.a.id)
    assert await scope.taught() == [] and not scope.images_dir.exists()


async def test_a_retrain_past_its_deadline_fails_cleanly(servers: Servers):
    s = servers
    s.backend.fail_with = BackendTimeout("Retraining took longer than RETRAIN_TIMEOUT_S (300 s).")
    failed = await s.retrain(s.admin_a, s.a_chan)
    assert failed.content == (
        "❌ Retraining failed: Retraining took longer than RETRAIN_TIMEOUT_S (300 s)."
    )
    last = await s.bot.bot.store.guild(s.a.id).last_retrain()
    assert last is not None and last.outcome == "failed"
    s.backend.fail_with = None
    assert (await s.retrain(s.admin_a, s.a_chan)).embeds  # the lock was released
