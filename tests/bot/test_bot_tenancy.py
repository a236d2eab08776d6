"""Two servers, one bot: nothing one server does changes another's answers, labels,
channels, counts or /status; quotas and fairness; /forget; rollback; retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.permissions import OPERATORS_ONLY
from golem_backend import BackendBusy, BackendTimeout
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import RunningBot, World, flower_bytes, launch
from tests.discord_sim import ADMINISTRATOR, Channel, Guild, Interaction, Message, User
from tests.discord_sim.components import find_component

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Servers:
    bot: RunningBot
    backend: ScriptedBackend
    a: Guild
    b: Guild
    a_chan: Channel
    b_chan: Channel
    admin_a: User
    admin_b: User
    member: User  # a plain member of both
    operator: User  # in ADMIN_USER_IDS, a plain member of both

    async def run(self, user: User, chan: Channel, name: str, **options: object) -> Message:
        ix = await self.bot.sim.slash(self.bot.app, chan, user, name, options)
        return await self.bot.sim.wait_response(ix)

    async def ix(self, user: User, chan: Channel, name: str, **options: object) -> Interaction:
        return await self.bot.sim.slash(self.bot.app, chan, user, name, options)

    async def teach(self, admin: User, chan: Channel, label: str, index: int) -> Message:
        att = self.bot.sim.upload(flower_bytes("daisy", index), f"t{index}.jpg")
        return await self.run(admin, chan, "teach", label=label, image=att)

    async def classify(self, chan: Channel, index: int = 0) -> Message:
        att = self.bot.sim.upload(flower_bytes("tulip", index), f"c{index}.jpg")
        return await self.run(self.member, chan, "classify", image=att)

    async def retrain(self, admin: User, chan: Channel, **options: object) -> Message:
        ix = await self.ix(admin, chan, "retrain", **options)
        return await self.bot.sim.wait_response(
            ix, predicate=lambda m: bool(m.embeds) or "failed" in m.content
        )


_counter = iter(range(1000))


@pytest_asyncio.fixture(loop_scope="session")
async def servers(world: World, tmp_path: Path, request: pytest.FixtureRequest):
    env = getattr(request, "param", {})
    async for s in _servers(world, tmp_path, env):
        yield s


async def _servers(world: World, tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Servers]:
    sim = world.sim
    n = next(_counter)
    owner = sim.create_user(f"owner{n}")
    a, b = sim.create_guild(f"Server A{n}", owner), sim.create_guild(f"Server B{n}", owner)
    a_chan, b_chan = sim.create_channel(a, "pics"), sim.create_channel(b, "pics")
    admin_a, admin_b = sim.create_user(f"admin_a{n}"), sim.create_user(f"admin_b{n}")
    member, operator = sim.create_user(f"member{n}"), sim.create_user(f"operator{n}")
    sim.add_member(a, admin_a, ADMINISTRATOR)
    sim.add_member(b, admin_b, ADMINISTRATOR)
    for g in (a, b):
        sim.add_member(g, member)
        sim.add_member(g, operator)
    app = sim.create_application(f"TenancyBot{n}")
    for g in (a, b):
        g.members.setdefault(app.user.id, [])
    backend = ScriptedBackend()
    data = tmp_path / "data"
    data.mkdir()
    base_env = {
        "DATA_DIR": str(data),
        "DATASET_DIR": str(data),
        "MESSAGE_CONTENT_INTENT": "true",
        "ADMIN_USER_IDS": str(operator.id),
        "COOLDOWN_USES": "1000",
        **env,
    }
    running = await launch(world, app, base_env, backend=backend)
    try:
        yield Servers(running, backend, a, b, a_chan, b_chan, admin_a, admin_b, member, operator)
    finally:
        await running.stop()


async def poll(predicate: object, timeout_s: float = 10.0) -> None:
    """Wait for a condition outside the simulator (the bot's files, the backend's calls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


def answer(msg: Message) -> list[dict[str, object]]:
    """What a reply says, without the per-upload thumbnail URL."""
    return [{k: v for k, v in e.items() if k != "thumbnail"} for e in msg.embeds]


def fields(msg: Message, index: int = 0) -> dict[str, str]:
    return {f["name"]: f["value"] for f in msg.embeds[index]["fields"]}


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


@pytest.mark.parametrize("servers", [{"MAX_CONCURRENT_REQUESTS": "4"}], indirect=True)
async def test_a_flood_from_one_server_leaves_the_other_half_for_the_others(servers: Servers):
    s = servers
    s.backend.gate = asyncio.Event()  # hold every classification in flight
    held = []
    for i in range(2):
        att = s.bot.sim.upload(flower_bytes("tulip", i), f"f{i}.jpg")
        held.append(await s.ix(s.member, s.a_chan, "classify", image=att))
    await poll(lambda: len(s.backend.calls) == 2)
    flood = []
    for i in range(2, 6):
        att = s.bot.sim.upload(flower_bytes("tulip", i), f"f{i}.jpg")
        flood.append(await s.ix(s.member, s.a_chan, "classify", image=att))
    for ix in flood:
        msg = await s.bot.sim.wait_response(ix)
        assert msg.ephemeral and "rest of my capacity is kept for other servers" in msg.content
    other = await s.ix(
        s.member, s.b_chan, "classify", image=s.bot.sim.upload(flower_bytes("tulip", 9), "b.jpg")
    )
    await poll(lambda: len(s.backend.calls) == 3)  # B got a slot
    s.backend.gate.set()
    for ix in (*held, other):
        msg = await s.bot.sim.wait_response(ix)
        assert msg.embeds and msg.embeds[0]["title"].startswith("daisy"), msg.text


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


async def test_model_rollback(servers: Servers):
    s = servers
    nothing = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert "nothing to roll back" in nothing.content
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    first = await s.bot.bot.store.guild(s.a.id).current_model()
    await s.teach(s.admin_a, s.a_chan, "iris", 1)
    await s.retrain(s.admin_a, s.a_chan)
    second = await s.bot.bot.store.guild(s.a.id).current_model()
    assert first and second and first.model_id != second.model_id
    msg = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert msg.content == f"Rolled back: this server now uses model {first.model_id}."
    answer = await s.classify(s.a_chan)
    assert answer.embeds[0]["footer"]["text"] == f"model {first.model_id}"
    msg = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert msg.content == "Rolled back: this server now uses the default model."


async def test_a_server_model_whose_file_is_gone_falls_back_to_the_default(servers: Servers):
    s = servers
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    model = await s.bot.bot.store.guild(s.a.id).current_model()
    assert model is not None
    model.path.unlink()
    answer = await s.classify(s.a_chan)
    assert answer.embeds[0]["footer"]["text"] == "model scripted-1"


async def test_settings_include_default(servers: Servers):
    s = servers
    shown = await s.run(s.admin_a, s.a_chan, "settings")
    assert "**included**" in shown.content
    off = await s.run(s.admin_a, s.a_chan, "settings", include_default=False)
    assert "**not included**" in off.content
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    await s.retrain(s.admin_b, s.b_chan)
    ts_a, ts_b = s.backend.trained
    assert ts_a is not None and not ts_a.include_default
    assert ts_b is not None and ts_b.include_default


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
