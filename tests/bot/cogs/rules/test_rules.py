"""Per-label rules in watched channels, end to end through the simulator: each action with
and without the permission it needs (checked when set, reported at run time), thresholds,
precedence, hostile options, and isolation between two servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.harness import World
from tests.bot.rules_world import Pair, Side, two_servers
from tests.discord_sim import ADD_REACTIONS, MANAGE_MESSAGES, SEND_MESSAGES, CommandRejected

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pair(world: World, tmp_path: Path) -> AsyncIterator[Pair]:
    async with two_servers(world, tmp_path) as p:
        yield p


async def set_rule(p: Pair, side: Side, **options: object) -> str:
    msg = await p.run(side.admin, side.pics, "rule set", **options)
    assert msg.ephemeral
    return msg.content


async def test_nothing_and_reply_per_image_of_one_message(pair: Pair):
    p = pair
    text = await set_rule(p, p.a, label="tulip", action="nothing", threshold=50.0)
    assert text.startswith("New rule: **tulip** at 50% or more: nothing"), text
    msg = await p.post(p.a.pics, p.image("tulip", 0.9), p.image("daisy", 0.9))
    reply = await p.replies_to(msg)
    assert [e["title"] for e in reply.embeds] == ["daisy (90%)"]  # tulip: nothing


async def test_react_with_unicode_and_custom_emoji(pair: Pair):
    p = pair
    await set_rule(p, p.a, label="tulip", action="react", threshold=0.0, emoji="🌷")
    await set_rule(p, p.a, label="daisy", action="react", threshold=0.0, emoji=p.a.emoji.markup)
    msg = await p.post(p.a.pics, p.image("tulip", 0.6), p.image("daisy", 0.7))
    await p.sim.wait_until(lambda: len(msg.reactions) == 2)
    assert set(msg.reactions) == {"🌷", f"{p.a.emoji.name}:{p.a.emoji.id}"}
    assert not [m for m in p.sim.bot_messages(p.a.pics) if m.reference_id == msg.id]


async def test_react_refused_where_the_bot_cannot_react_and_reported_at_run_time(pair: Pair):
    p = pair
    # set while a watched channel denies Add Reactions: refused, saying what and where
    await p.run(p.a.admin, p.a.no_react, "autoclassify", mode="on")
    text = await set_rule(p, p.a, label="tulip", action="react", threshold=0.0, emoji="🌷")
    assert f"Add Reactions in <#{p.a.no_react.id}>" in text, text
    assert (await p.run(p.a.admin, p.a.pics, "rule list")).embeds[0]["title"] == "Rules (0)"
    # unwatched, the rule can be set; then the permission is taken away in Discord only
    await p.run(p.a.admin, p.a.no_react, "autoclassify", mode="off")
    text = await set_rule(p, p.a, label="tulip", action="react", threshold=0.0, emoji="🌷")
    assert text.startswith("New rule"), text
    p.a.pics.overwrites[p.bot.app.user.id] = (0, ADD_REACTIONS)
    msg = await p.post(p.a.pics, p.image("tulip", 0.9))
    warning = await p.replies_to(msg)
    assert "missing the Read Message History, Add Reactions permissions" in warning.content
    assert not msg.reactions
    assert p.sim.rejected[-1][2:] == (403, {"code": 50013, "message": "Missing Permissions"})
    after = await p.post(p.a.mod, p.image("daisy", 0.9))  # the bot is still up
    assert (await p.replies_to(after)).embeds[0]["title"] == "daisy (90%)"
    # the same problem again in that channel: logged, not reported again
    refused = len([r for r in p.sim.rejected if r[2] == 403])
    again = await p.post(p.a.pics, p.image("tulip", 0.9))
    await p.sim.wait_until(lambda: len([r for r in p.sim.rejected if r[2] == 403]) > refused)
    await asyncio.sleep(0.3)
    assert not [m for m in p.sim.bot_messages(p.a.pics) if m.reference_id == again.id]


async def test_log_posts_the_image_with_a_jump_link(pair: Pair):
    p = pair
    text = await set_rule(p, p.a, label="unknown", action="log", threshold=0.0, log_channel=p.a.log)
    assert f"log to <#{p.a.log.id}>" in text, text
    msg = await p.post(p.a.pics, p.image("unknown", 0.2))
    logged = await p.sim.wait_bot_message(lambda m: m.channel_id == p.a.log.id)
    [embed] = logged.embeds
    assert f"/channels/{p.a.guild.id}/{p.a.pics.id}/{msg.id})" in embed["description"]
    assert f"<@{p.member.id}>" in embed["description"]
    [image] = logged.attachments
    assert image.data is not None and p.backend.answers[image.data].label == "unknown"
    assert embed["image"]["url"] == image.url
    assert not [m for m in p.sim.bot_messages(p.a.pics) if m.reference_id == msg.id]


async def test_log_channel_without_permission_or_of_another_server_is_refused(pair: Pair):
    p = pair
    text = await set_rule(
        p, p.a, label="tulip", action="log", threshold=0.0, log_channel=p.a.closed_log
    )
    assert text == (
        f"I can't post to <#{p.a.closed_log.id}>: I'm missing Send Messages, Embed Links, "
        "Attach Files there. "
        "Grant it, then set the rule again."
    )
    text = await set_rule(p, p.a, label="tulip", action="log", threshold=0.0, log_channel=p.b.log)
    assert text == "The log channel must be a channel of this server."
    assert not await p.bot.bot.store.guild(p.a.guild.id).rules()
    # set, then the log channel closes: reported in the watched channel, bot stays up
    await set_rule(p, p.a, label="tulip", action="log", threshold=0.0, log_channel=p.a.log)
    p.a.log.overwrites[p.a.guild.everyone.id] = (0, SEND_MESSAGES)
    msg = await p.post(p.a.pics, p.image("tulip", 0.9))
    warning = await p.replies_to(msg)
    assert f"to <#{p.a.log.id}>, but I'm missing" in warning.content, warning.content
    assert not p.sim.bot_messages(p.a.log)


async def test_delete_needs_manage_messages(pair: Pair):
    p = pair
    text = await set_rule(p, p.a, label="tulip", action="delete", threshold=90.0)
    assert text.startswith("I can't follow this rule: I'm missing Manage Messages in "), text
    assert f"<#{p.a.pics.id}>" in text
    assert f"<#{p.a.mod.id}>" not in text  # there the bot may delete
    await p.run(p.a.admin, p.a.pics, "autoclassify", mode="off")
    text = await set_rule(p, p.a, label="tulip", action="delete", threshold=90.0)
    assert text.startswith("New rule: **tulip** at 90% or more: delete"), text
    await set_rule(p, p.a, label="*", action="log", threshold=0.0, log_channel=p.a.log)
    doomed = await p.post(p.a.mod, p.image("tulip", 0.95))
    await p.sim.wait_until(lambda: doomed.deleted)
    kept = await p.post(p.a.mod, p.image("tulip", 0.5))  # under 90%: the catch-all logs it
    logged = await p.sim.wait_bot_message(
        lambda m: m.channel_id == p.a.log.id and str(kept.id) in m.embeds[0]["description"]
    )
    assert logged.embeds[0]["title"] == "tulip (50%)" and not kept.deleted
    # Manage Messages taken away after the rule was set: reported, never a crash
    p.a.mod.overwrites.pop(p.bot.app.user.id)
    survivor = await p.post(p.a.mod, p.image("tulip", 0.99))
    warning = await p.replies_to(survivor)
    assert "missing the Manage Messages permission in this channel" in warning.content
    assert not survivor.deleted
    p.a.mod.overwrites[p.bot.app.user.id] = (MANAGE_MESSAGES, 0)


async def test_thresholds_just_below_at_and_above(pair: Pair):
    p = pair
    await set_rule(p, p.a, label="tulip", action="react", threshold=80.0, emoji="🌷")
    below, at, above = [await p.post(p.a.mod, p.image("tulip", c)) for c in (0.7999, 0.80, 0.8001)]
    await p.sim.wait_until(lambda: at.reactions and above.reactions)
    assert (await p.replies_to(below)).embeds[0]["title"] == "tulip (80%)"
    assert not below.reactions


async def test_a_labels_rule_wins_over_the_catch_all(pair: Pair):
    p = pair
    await set_rule(p, p.a, label="*", action="react", threshold=0.0, emoji="👀")
    await set_rule(p, p.a, label="tulip", action="react", threshold=60.0, emoji="🌷")
    own, low, other = [
        await p.post(p.a.mod, p.image(label, c))
        for label, c in (("tulip", 0.9), ("tulip", 0.5), ("daisy", 0.9))
    ]
    await p.sim.wait_until(lambda: own.reactions and low.reactions and other.reactions)
    assert list(own.reactions) == ["🌷"]
    assert list(low.reactions) == list(other.reactions) == ["👀"]
    listed = await p.run(p.a.admin, p.a.pics, "rule list")
    assert listed.embeds[0]["description"].splitlines() == [
        "**any recognised label** at 0% or more: react 👀",
        "**tulip** at 60% or more: react 🌷",
    ]
    removed = await p.run(p.a.admin, p.a.pics, "rule remove", label="any")
    assert removed.content == "Removed the rule for **\\***."


async def test_hostile_rule_options_get_clear_messages(pair: Pair):
    p = pair
    cases = {
        "Tulip!!": "is not a valid label",
        "x" * 32: None,  # valid but unknown
        "bluebell": "doesn't know **bluebell** and it has no taught images",
    }
    for label, expected in cases.items():
        text = await set_rule(p, p.a, label=label, action="nothing", threshold=1.0)
        assert expected is None or expected in text, text
        assert not text.startswith("New rule"), text
    with pytest.raises(CommandRejected):  # the Discord client refuses 33 characters
        await p.ix(p.a.admin, p.a.pics, "rule set", label="x" * 33, action="nothing", threshold=1)
    bad = {
        (("emoji", "abc"),): "That is not an emoji",
        (("emoji", "🌷 and more"),): "That is not an emoji",
        (("emoji", "<script>"),): "That is not an emoji",
        (("emoji", p.b.emoji.markup),): "not one of this server's",
        (("emoji", "<:ghost:123456789012345678>"),): "not one of this server's",
        (): "needs an `emoji`",
    }
    for extra, expected in bad.items():
        text = await set_rule(p, p.a, label="tulip", action="react", threshold=1.0, **dict(extra))
        assert expected in text, (extra, text)
    text = await set_rule(p, p.a, label="tulip", action="nothing", threshold=1.0, emoji="🌷")
    assert text == "`emoji` is only for the react action."
    text = await set_rule(p, p.a, label="tulip", action="log", threshold=1.0)
    assert text == "The log action needs a `log_channel`."
    for threshold in (-0.01, 100.5, 1e308):
        text = await set_rule(p, p.a, label="tulip", action="nothing", threshold=threshold)
        assert text.startswith("The threshold is a confidence in percent, from 0 to 100"), text
    text = (await p.run(p.a.admin, p.a.pics, "rule remove", label="daisy")).content
    assert text == "There is no rule for **daisy**."
    assert not await p.bot.bot.store.guild(p.a.guild.id).rules()
    with pytest.raises(CommandRejected):  # hidden from plain members
        await p.ix(p.member, p.a.pics, "rule set", label="tulip", action="delete", threshold=0)


async def test_rules_are_per_server_and_forgotten_with_it(pair: Pair):
    p = pair
    await set_rule(p, p.a, label="daisy", action="react", threshold=0.0, emoji="🌼")
    in_b = await p.post(p.b.mod, p.image("daisy", 0.9))
    assert (await p.replies_to(in_b)).embeds[0]["title"] == "daisy (90%)"
    assert not in_b.reactions
    listed_b = await p.run(p.b.admin, p.b.pics, "rule list")
    assert listed_b.embeds[0]["title"] == "Rules (0)"
    in_a = await p.post(p.a.mod, p.image("daisy", 0.9))
    await p.sim.wait_until(lambda: in_a.reactions)
    # /forget all takes the rules (and the options) with the rest of the server's data
    await p.run(p.a.admin, p.a.pics, "settings", low_confidence="95")
    ask = await p.run(p.a.admin, p.a.pics, "forget all")
    done = await p.sim.press_button(p.bot.app, ask, p.a.admin, "Forget everything")
    await p.sim.wait_response(done, predicate=lambda m: m.content.startswith("Forgotten"))
    scope = p.bot.bot.store.guild(p.a.guild.id)
    assert await scope.rules() == [] and (await scope.options()).low_confidence is None


async def test_a_long_rule_list_is_paged_within_discords_limit(pair: Pair):
    """100 rules of 32-character labels need about 6,000 characters: pages, none cut."""
    from bot.db import LabelRule, RuleAction

    p = pair
    scope = p.bot.bot.store.guild(p.a.guild.id)
    labels = [f"label-{i:03d}-{'x' * 22}" for i in range(100)]
    for label in labels:
        await scope.set_rule(LabelRule(label, RuleAction.REACT, 0.5, emoji="🌷", created_by=1))
    first = await p.run(p.a.admin, p.a.pics, "rule list")
    footer = first.embeds[0]["footer"]["text"]
    assert footer.startswith("page 1/2 · ") and first.embeds[0]["title"] == "Rules (100)"
    seen = first.embeds[0]["description"].splitlines()
    turned = await p.sim.press_button(p.bot.app, first, p.a.admin, "Next")
    await p.sim.wait_until(lambda: turned.response_type == 7)
    assert first.embeds[0]["footer"]["text"].startswith("page 2/2 · ")
    seen += first.embeds[0]["description"].splitlines()
    assert [line.split("**")[1].replace("\\", "") for line in seen] == labels  # all, in order
    assert all(line.endswith("react 🌷") for line in seen)  # no line cut


async def test_the_catch_all_never_deletes_what_the_model_does_not_recognise(pair: Pair):
    """A `*` delete rule at 0% acts on recognised images only: an image answered `unknown`
    (however close to a label) is answered, not deleted; only an `unknown` rule acts on it."""
    p = pair
    await p.run(p.a.admin, p.a.pics, "autoclassify", mode="off")
    text = await set_rule(p, p.a, label="*", action="delete", threshold=0.0)
    assert text.startswith("New rule: **any recognised label** at 0% or more: delete"), text
    doomed = await p.post(p.a.mod, p.image("tulip", 0.2))
    meme = await p.post(p.a.mod, p.image("unknown", 0.99))
    await p.sim.wait_until(lambda: doomed.deleted)
    reply = await p.replies_to(meme)
    assert reply.embeds[0]["description"] == "This doesn't look like anything I was trained on."
    assert not meme.deleted
    await set_rule(p, p.a, label="unknown", action="delete", threshold=0.0)
    gone = await p.post(p.a.mod, p.image("unknown", 0.1))
    await p.sim.wait_until(lambda: gone.deleted)
