"""Forged "Something else..." forms and component ids (issue 19, items 6 and 7), through the
simulator and the real bot. A modal's custom id comes back from the member's client
unchecked (``submit_modal(enforce=False, custom_id=...)`` sends what a modified client
could), so:

- a "Teach as..." form naming a message in a channel the trainer cannot view teaches and
  lists nothing and says why; one naming another server's message finds nothing;
- ids past 2^63, zero, a hundred digits, other scripts' digits, a custom id longer than
  Discord allows: each gets the clear message of its kind ("no longer takes feedback",
  "not in a channel of this server"...), never the apology, never a traceback, and no
  request to Discord that its API would refuse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.errors import APOLOGY
from tests.bot.databases import ENGINES, database_url
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World, flower_bytes
from tests.discord_sim import Interaction, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

HIDDEN = (
    "You can't read that channel's messages, so you can't teach its images. Use "
    '"Teach as..." on a message you can see.'
)
NOT_HERE = "That message is not in a channel of this server I can see."
GONE_START = "This answer no longer takes feedback"


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path / "data", {"DATABASE_URL": url}):
            yield servers


async def post_image(s: Servers, channel: object, user: object, name: str, index: int) -> Message:
    att = s.sim.upload(flower_bytes("daisy", index), name, content_type="image/jpeg")
    return await s.sim.post_message(channel, user, "", [att])  # type: ignore[arg-type]


async def teach_form(s: Servers, user: object, post: Message) -> tuple[Message, Interaction]:
    """ "Teach as..." on ``post``, then "Something else...": the picker and the modal's
    opening interaction."""
    ix = await s.sim.message_command(s.bot.app, s.a_chan, user, "Teach as...", post)
    picker = await s.sim.wait_response(ix)
    opened = await s.sim.press_button(s.bot.app, picker, user, "Something else...")
    await s.sim.wait_modal(opened)
    return picker, opened


async def forged(opened: Interaction, s: Servers, custom_id: str, expect: str = "") -> Message:
    """Submit the form under ``custom_id``; the reply (the one containing ``expect``)."""
    submitted = await s.sim.submit_modal(
        opened, {"label": "rose"}, enforce=False, custom_id=custom_id
    )
    return await s.sim.wait_response(submitted, predicate=lambda m: expect in m.content)


async def test_teach_as_form_for_a_hidden_channel_teaches_and_lists_nothing(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    await s.make_trainer_role()
    visible = await post_image(s, s.a_chan, s.member, "visible.jpg", 0)
    secret = await post_image(s, s.a_secret, s.insider, "secret-plans.jpg", 1)
    b_post = await post_image(s, s.b_chan, s.member, "other-server.jpg", 2)

    _, opened = await teach_form(s, s.trainer, visible)
    told = await forged(opened, s, f"ml:m{s.a_secret.id}-{secret.id}")
    assert told.ephemeral and told.content == HIDDEN
    assert "secret-plans" not in told.text
    assert await scope.taught() == []
    # another server's channel and message: not this server's
    told = await forged(opened, s, f"ml:m{s.b_chan.id}-{b_post.id}")
    assert told.content == NOT_HERE and "other-server" not in told.text
    # a message of another channel under this channel's id: not found, nothing taught
    told = await forged(opened, s, f"ml:m{s.a_chan.id}-{secret.id}", "deleted")
    assert told.ephemeral and "secret-plans" not in told.text
    assert await scope.taught() == []

    # once the trainer may view the channel, the same form teaches, as posted by its author
    s.sim.give_role(s.a, s.trainer, s.insiders)
    picker, opened = await teach_form(s, s.trainer, visible)
    await s.sim.submit_modal(
        opened, {"label": "rose"}, enforce=False, custom_id=f"ml:m{s.a_secret.id}-{secret.id}"
    )
    await s.sim.wait_until(lambda: picker.content.startswith("Taught 1 of 1"))
    [record] = await scope.taught()
    assert record.user_id == s.trainer.id and record.author_id == s.insider.id


async def test_forged_ids_get_a_clear_message(s: Servers, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    post = await post_image(s, s.a_chan, s.member, "p.jpg", 3)
    answer = await s.classify(s.a_chan, 0)
    answer_id = answer.components[0]["components"][0]["custom_id"].split(":")[2]
    huge = "9" * 97  # the longest id a 100-character custom id can carry here
    arabic_three = "\u0663"  # int() reads it as 3
    for custom_id in (
        "ml:a0",
        f"ml:a{2**63}",
        f"ml:a{2**31}",
        f"ml:a{huge}",
        f"ml:a{answer_id}0000000000",
    ):
        picker = await s.sim.wait_response(await s.press(answer, s.member, "Wrong..."))
        opened = await s.press(picker, s.member, "Something else...")
        await s.sim.wait_modal(opened)
        await s.sim.submit_modal(opened, {"label": "rose"}, enforce=False, custom_id=custom_id)
        await s.sim.wait_until(lambda p=picker: p.content.startswith(GONE_START))
    _, opened = await teach_form(s, s.admin_a, post)
    for custom_id, expected in (
        (f"ml:m{s.a_chan.id}-{2**64}", NOT_HERE),
        (f"ml:m{s.a_chan.id}-0", NOT_HERE),
        (f"ml:m0-{post.id}", NOT_HERE),
        (f"ml:m{2**63}-{post.id}", NOT_HERE),
        (f"ml:m{s.a_chan.id}-{huge[:60]}", NOT_HERE),
        (f"ml:a{arabic_three}", "This form is not in use any more."),
        ("ml:x5", "This form is not in use any more."),
        (f"ml:a{'9' * 150}", "This form is not in use any more."),
    ):
        told = await forged(opened, s, custom_id)
        assert told.ephemeral and told.content == expected, custom_id
    scope = s.bot.bot.store.guild(s.a.id)
    assert await scope.taught() == [] and (await scope.review_queue())[1] == 0
    refusals = [r for r in caplog.records if r.getMessage().startswith("feedback action")]
    assert len(refusals) == 8  # the log is captured: each refused form is in it
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert failures == [], [r.getMessage() for r in failures]
    assert not any(APOLOGY in m.text for m in s.sim.messages.values())
