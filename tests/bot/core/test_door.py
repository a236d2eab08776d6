"""The door (``bot.core.admission``) wired into the real bot, through the simulator, with a
backend whose capacity and answers the test controls: every path that classifies goes
through it, refusal only past the bound (the expected wait in the message), another
server's request goes next, "thinking..." at once for a long wait, cooldowns counted only
when admitted, posted images answered in order with the backlog bounded, and shutdown
with a full queue."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.answering import DEFER_AFTER_S
from golem_backend import ModelRef, Outcome
from tests.bot.crowd_world import Crowd, crowd
from tests.bot.fakes import HeldBackend, ScriptedBackend
from tests.bot.harness import World, flower_bytes
from tests.discord_sim import Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUEUE_FULL = re.compile(
    r"I'm busy: about (\d+) s of images are waiting ahead of yours\. "
    r"Please try again in about (\d+) s\."
)


async def held_crowd(
    world: World, tmp_path: Path, env: dict[str, str] | None = None, members: int = 20
) -> AsyncIterator[tuple[Crowd, HeldBackend]]:
    backend = HeldBackend()
    async for c in crowd(
        world,
        tmp_path / "data",
        {"COOLDOWN_USES": "1000", **(env or {})},
        backend=backend,
        members=members,
    ):
        yield c, backend


async def until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def is_answer(msg: Message) -> bool:
    return bool(msg.embeds) and "%" in msg.embeds[0].get("title", "")


# --- every path through the one door ---------------------------------------------------------


class DoorWatchingBackend(ScriptedBackend):
    """Records every classification made while the door held no turn for its images."""

    def __init__(self) -> None:
        super().__init__()
        self.bot = None
        self.outside: list[int] = []

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        assert self.bot is not None
        if self.bot.admission.stats().released_images < len(images):
            self.outside.append(len(images))
        return await super().classify(images, top_k, model=model, tenant=tenant)


@pytest_asyncio.fixture(loop_scope="session")
async def watched_door(
    world: World, tmp_path: Path
) -> AsyncIterator[tuple[Crowd, DoorWatchingBackend]]:
    backend = DoorWatchingBackend()
    async for c in crowd(
        world, tmp_path / "data", {"COOLDOWN_USES": "1000"}, backend=backend, servers=1, members=4
    ):
        backend.bot = c.bot.bot
        yield c, backend


async def test_every_path_that_classifies_goes_through_the_one_door(watched_door):
    c, backend = watched_door
    sim, app, admission = c.sim, c.bot.app, c.bot.bot.admission
    [s] = c.servers
    member, other = s.members[0], s.members[1]

    def admitted() -> Counter[str]:
        return Counter(admission.stats().admitted)

    before = admitted()
    answer = (await c.replies([await c.classify(s, member, index=30)]))[0]  # /classify
    assert is_answer(answer)

    post = await sim.post_message(
        s.general, member, "", [sim.upload(flower_bytes("tulip", i), f"m{i}.jpg") for i in range(3)]
    )
    ix = await sim.message_command(app, s.general, other, "Classify image", post)
    assert is_answer(await sim.wait_response(ix))  # the menu

    posted = await c.post(s, member)  # an auto-reply
    await sim.wait_bot_message(lambda m: m.reference_id == posted.id)

    att = sim.upload(flower_bytes("daisy", 20), "t.jpg")
    ix = await sim.slash(app, s.general, s.admin, "teach images", {"label": "daisy", "image": att})
    assert (await sim.wait_response(ix)).content.startswith("Learned **daisy**")

    ix = await sim.message_command(app, s.general, s.admin, "Teach as...", post)  # Teach as...
    picker = await sim.wait_response(ix)
    await sim.choose(app, picker, s.admin, ["tulip"])
    await sim.wait_until(lambda: picker.content.startswith("Taught 3 of 3 image(s) as **tulip**"))

    ix = await sim.press_button(app, answer, s.admin, "Wrong...")  # a trainer's correction
    picker = await sim.wait_response(ix)
    await sim.choose(app, picker, s.admin, ["tulip"])
    await sim.wait_until(lambda: picker.content.startswith("Thanks! The image is learned"))

    second = (await c.replies([await c.classify(s, other, index=5)]))[0]
    ix = await sim.press_button(app, second, other, "Wrong...")  # a member's: reviewed
    picker = await sim.wait_response(ix)
    await sim.choose(app, picker, other, ["tulip"])
    await sim.wait_until(lambda: "review queue" in picker.content)
    review = await sim.wait_response(await sim.slash(app, s.general, s.admin, "review", {}))
    await sim.press_button(app, review, s.admin, "Approve")  # a review approval
    await sim.wait_until(lambda: review.content.startswith("Approved: the image is learned"))

    through = admitted() - before
    assert through == {
        "classify": 2,
        "menu": 1,
        "auto_reply": 1,
        "teach": 1,
        "teach_as": 1,
        "correction": 1,
        "review_approval": 1,
    }
    assert backend.calls == [1, 3, 1, 1, 3, 1, 1, 1]  # images per request, in that order
    assert backend.outside == [], "the backend was called without a turn at the door"
    assert admission.stats().released_images == 0  # every turn ended


# --- the bound ------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def held(world: World, tmp_path: Path, request: pytest.FixtureRequest):
    async for pair in held_crowd(world, tmp_path, getattr(request, "param", {})):
        yield pair


@pytest.mark.parametrize("held", [{"MAX_QUEUE_WAIT_S": "1"}], indirect=True)
async def test_refused_only_past_the_bound_with_the_expected_wait_in_the_message(held):
    """10 images a second, a 1 s bound: of 15 members at once, the first 10 fit (the 10th
    waits 1.0 s: admitted) and are answered; the last 5 are told at once how long the
    wait is and when to try again."""
    c, backend = held
    backend.images_per_s, backend.slots = 10.0, 2
    s = c.servers[0]
    admission = c.bot.bot.admission
    ixs = [await c.classify(s, index=i) for i in range(15)]
    await until(lambda: admission.stats().queued_requests == 8 and len(backend.held) == 2)
    await until(lambda: sum(bool(ix.final) for ix in ixs) == 5)  # told at once
    refused = [ix.final[0] for ix in ixs if ix.final]
    # each would wait 1.1 s (2 in the backend, 8 queued, itself; a refusal adds nothing)
    assert [m.content for m in refused] == [
        "I'm busy: about 1 s of images are waiting ahead of yours. Please try again in about 1 s."
    ] * 5
    assert all(m.ephemeral for m in refused)
    assert admission.stats().refused == {("classify", "queue_full"): 5}
    for _ in range(10):
        await until(lambda: backend.held)
        answered = backend.answer()
        await until(lambda held=answered: held not in backend.held)
    answers = await c.replies([ix for ix in ixs if not ix.final or is_answer(ix.final[0])])
    assert len(answers) == 10 and all(is_answer(m) and not m.ephemeral for m in answers)
    assert admission.stats().admitted == {"classify": 10}


# --- fairness -------------------------------------------------------------------------------


async def test_a_third_servers_request_during_two_servers_bursts_goes_next(held):
    """One request in the backend at a time (its slots); servers A and B have 10 each
    waiting when C's only request arrives: it goes after at most one request of each
    busy server (start-time fair queueing), not after the 19 queued before it."""
    c, backend = held
    backend.slots = 1
    a, b, third = c.servers
    bursts = []
    for i in range(10):
        bursts.append(await c.classify(a, index=i))
        bursts.append(await c.classify(b, index=i))
    admission = c.bot.bot.admission
    await until(lambda: admission.stats().queued_requests == 19 and len(backend.held) == 1)
    late = await c.classify(third)
    await until(lambda: admission.stats().queued_requests == 20)
    for _ in range(21):
        await until(lambda: len(backend.held) == 1)
        answered = backend.answer()
        await until(lambda held=answered: held not in backend.held)
    position = backend.arrivals.index(third.tenant)
    assert position <= 2, backend.arrivals[:5]  # after A's first and at most B's first
    assert Counter(backend.arrivals) == {a.tenant: 10, b.tenant: 10, third.tenant: 1}
    assert all(is_answer(m) for m in await c.replies([*bursts, late]))


# --- "thinking..." ----------------------------------------------------------------------------


async def test_a_wait_expected_past_a_second_shows_thinking_at_once(held):
    """One image a second: the second request expects a 2 s wait, so it defers at once
    (Discord's 3 s rule with the queue's wait included), not when the 1 s timer ends;
    the first, expected in 1 s, is not shown as waiting."""
    c, backend = held
    backend.images_per_s, backend.slots = 1.0, 1
    s = c.servers[0]
    first = await c.classify(s)
    await until(lambda: len(backend.held) == 1)
    second = await c.classify(s, index=1)
    await c.sim.wait_until(lambda: second.response_type == 5, timeout_s=5)  # deferred
    assert second.responded_at is not None
    assert second.responded_at - second.created < DEFER_AFTER_S / 2
    backend.answer()
    assert is_answer((await c.replies([first]))[0])
    await until(lambda: len(backend.held) == 1)
    backend.answer()
    answer = (await c.replies([second]))[0]
    assert is_answer(answer) and not answer.ephemeral  # the answer replaced "thinking..."


# --- cooldowns ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "held",
    [{"MAX_QUEUE_WAIT_S": "1", "COOLDOWN_USES": "2", "COOLDOWN_WINDOW_S": "60"}],
    indirect=True,
)
async def test_a_refused_request_costs_the_member_no_use(held):
    c, backend = held
    backend.images_per_s, backend.slots = 1.0, 1
    s = c.servers[0]
    member, other = s.members[0], s.members[1]
    first = await c.classify(s, other)  # a second's work in flight
    await until(lambda: len(backend.held) == 1)
    refused = (await c.replies([await c.classify(s, member)]))[0]
    assert QUEUE_FULL.fullmatch(refused.content), refused.content
    backend.answer()
    await c.replies([first])
    for i in range(2):  # both uses are still the member's
        ix = await c.classify(s, member, index=i)
        await until(lambda: len(backend.held) == 1)
        backend.answer()
        assert is_answer((await c.replies([ix]))[0])
    over = (await c.replies([await c.classify(s, member, index=3)]))[0]
    assert over.ephemeral and over.content.startswith("Slow down: you can classify again in")
    assert not backend.held  # a member over the cooldown is never queued


# --- auto-replies ------------------------------------------------------------------------------


def replies_to(c: Crowd, posts: list[Message], *, answers: bool) -> list[Message]:
    """The bot's replies to ``posts`` (answers, or the warnings without embeds), in the
    order they were sent."""
    ids = {p.id for p in posts}
    found = [m for m in c.sim.bot_messages() if m.reference_id in ids and bool(m.embeds) == answers]
    return sorted(found, key=lambda m: m.id)


@pytest.mark.parametrize("held", [{"MAX_QUEUE_WAIT_S": "2"}], indirect=True)
async def test_posted_images_are_answered_in_order_and_the_backlog_is_bounded(held):
    c, backend = held
    s = c.servers[0]
    sim = c.sim
    # four images posted, classified together, answered by the backend last first
    posts = [await c.post(s, index=i) for i in range(4)]
    await until(lambda: len(backend.held) == 4)
    for index in (3, 2, 1, 0):
        backend.answer(index)
        await asyncio.sleep(0.05)  # a reply out of turn would go now
    await sim.wait_until(lambda: len(replies_to(c, posts, answers=True)) == 4)
    assert [m.reference_id for m in replies_to(c, posts, answers=True)] == [p.id for p in posts]

    # two images a second, a 2 s bound: of seven posted at once, four are taken (the 4th
    # waits 2.0 s), three are told at once (each member warned once per window)
    backend.images_per_s = 2.0
    burst = [await c.post(s, index=10 + i) for i in range(7)]
    await sim.wait_until(lambda: len(replies_to(c, burst, answers=False)) == 3)
    warned = replies_to(c, burst, answers=False)
    assert all(QUEUE_FULL.fullmatch(m.content) for m in warned), [m.content for m in warned]
    assert {m.reference_id for m in warned} == {p.id for p in burst[4:]}
    assert c.bot.bot.admission.stats().refused == {("auto_reply", "queue_full"): 3}
    await until(lambda: len(backend.held) == 4)
    for index in (3, 2, 1, 0):  # newest first, again
        backend.answer(index)
        await asyncio.sleep(0.02)
    await sim.wait_until(lambda: len(replies_to(c, burst, answers=True)) == 4)
    answered = replies_to(c, burst, answers=True)
    assert [m.reference_id for m in answered] == [p.id for p in burst[:4]]
    cog = c.bot.bot.cogs["AutoClassifyCog"]
    await until(lambda: len(cog.order) == 0)  # nothing left in line


# --- shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("held", [{"SHUTDOWN_GRACE_S": "1"}], indirect=True)
async def test_shutdown_with_a_full_queue_tells_every_waiting_member(held):
    """One request in the backend and 10 waiting (/classify, the menu, a posted image): at
    shutdown each waiting member is told at once, the one in the backend after the grace;
    the bot then stops cleanly."""
    c, backend = held
    backend.slots = 1
    a, b, _ = c.servers
    sim, app, admission = c.sim, c.bot.app, c.bot.bot.admission
    ixs = [await c.classify(b if i % 2 == 0 else a, index=i) for i in range(9)]
    post = await sim.post_message(
        b.general, b.members[10], "", [sim.upload(flower_bytes("daisy"), "x.jpg")]
    )
    ixs.append(await sim.message_command(app, b.general, b.members[11], "Classify image", post))
    posted = await c.post(a, a.members[12])
    await until(lambda: admission.stats().queued_requests == 10 and len(backend.held) == 1)
    started = time.monotonic()
    closing = asyncio.create_task(c.bot.bot.close())
    restarting = "I'm restarting right now. Please try again in a minute."
    told = await c.replies(ixs, timeout_s=10)
    told.append(await sim.wait_bot_message(lambda m: m.reference_id == posted.id, timeout_s=10))
    assert [m.content for m in told] == [restarting] * 11
    assert all(m.ephemeral for m in told[:-1])  # privately; the posted image in its channel
    after = sorted(m.created_mono - started for m in told)
    assert after[-2] < 0.9, f"the waiting were told {after[-2]:.2f} s after shutdown began"
    assert after[-1] >= 1.0, "the one in the backend is cut off after its grace, not before"
    await asyncio.wait_for(closing, 15)
    await asyncio.wait_for(c.bot.task, 15)  # no exception: the bot stopped cleanly
    assert backend.stopped and not backend.held
    refused = admission.stats().refused
    assert sum(refused.values()) == 10  # the ten waiting (the eleventh was in the backend)
    assert {path for path, _ in refused} <= {"classify", "menu", "auto_reply"}
    assert {reason for _, reason in refused} == {"shutting_down"}
