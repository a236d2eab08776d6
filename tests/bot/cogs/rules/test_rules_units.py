"""The rules' pure parts: emoji and threshold parsing, precedence, how a message's images
combine."""

from __future__ import annotations

import pytest

from bot.cogs.rules import ProblemReports, plan_message
from bot.cogs.rules._rules import InvalidRule, choose_rule, parse_emoji, parse_threshold
from bot.db import ANY_LABEL, LabelRule, RuleAction
from golem_backend import UNKNOWN, LabelScore, Prediction


def answer(label: str, confidence: float) -> Prediction:
    return Prediction(label, confidence, (LabelScore(label, confidence),))


@pytest.mark.parametrize(
    "text",
    ["🌷", "👍🏽", "👩‍👩‍👧", "🇫🇷", "1️⃣", "#⃣", "❤️", "🏳️‍🌈", " 🌼 "],
)
def test_unicode_emojis_are_accepted(text: str):
    assert parse_emoji(text).text == text.strip() and parse_emoji(text).custom_id is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "1",
        "abc",
        "🌷🌷",
        "🌷 x",
        "<:x:1>",
        "<:ok:12345678901234567>x",
        "🇫",
        "🇫🇷🇩🇪",
        "\u200d",
        "️",
        "@everyone",
        "<script>",
        "🌷" * 20,
        "\x00",
    ],
)
def test_anything_else_is_not_an_emoji(text: str):
    with pytest.raises(InvalidRule, match="That is not an emoji"):
        parse_emoji(text)


def test_custom_emoji_markup_gives_its_id():
    assert parse_emoji("<:tulip_x:123456789012345678>").custom_id == 123456789012345678
    assert parse_emoji("<a:spin:123456789012345678>").custom_id == 123456789012345678


@pytest.mark.parametrize(("given", "expected"), [(0, 0.0), (80, 0.8), (100, 1.0), (33.33, 0.3333)])
def test_thresholds_in_percent(given: float, expected: float):
    assert parse_threshold(given) == expected


@pytest.mark.parametrize("given", [-0.001, 100.001, float("nan"), float("inf"), -float("inf")])
def test_thresholds_out_of_range(given: float):
    with pytest.raises(InvalidRule, match="from 0 to 100"):
        parse_threshold(given)


RULES = {
    "tulip": LabelRule("tulip", RuleAction.DELETE, 0.8),
    UNKNOWN: LabelRule(UNKNOWN, RuleAction.LOG, 0.0, log_channel_id=5),
    ANY_LABEL: LabelRule(ANY_LABEL, RuleAction.REACT, 0.5, emoji="👀"),
}


def test_precedence_label_then_catch_all_then_reply():
    assert choose_rule(RULES, answer("tulip", 0.8)) is RULES["tulip"]
    assert choose_rule(RULES, answer("tulip", 0.79)) is RULES[ANY_LABEL]
    assert choose_rule(RULES, answer("daisy", 0.5)) is RULES[ANY_LABEL]
    assert choose_rule(RULES, answer("daisy", 0.49)) is None
    assert choose_rule(RULES, answer(UNKNOWN, 0.1)) is RULES[UNKNOWN]
    assert choose_rule({}, answer("tulip", 1.0)) is None


def test_the_catch_all_never_acts_on_unknown():
    catch_all = {ANY_LABEL: LabelRule(ANY_LABEL, RuleAction.DELETE, 0.0)}
    for confidence in (0.0, 0.5, 0.99, 1.0):
        assert choose_rule(catch_all, answer(UNKNOWN, confidence)) is None
    assert choose_rule(catch_all, answer("tulip", 0.0)) is catch_all[ANY_LABEL]
    plan = plan_message(catch_all, [answer(UNKNOWN, 0.99), answer("tulip", 0.3)])
    assert plan.delete and plan.deleted_by is catch_all[ANY_LABEL]
    only_unknown = plan_message(catch_all, [answer(UNKNOWN, 0.99)])
    assert not only_unknown.delete and only_unknown.reply == [0]


def test_delete_wins_but_logs_first_and_nothing_else():
    plan = plan_message(RULES, [answer(UNKNOWN, 0.2), answer("tulip", 0.9), answer("x", 0.6)])
    assert plan.delete and plan.deleted_by is RULES["tulip"]
    assert plan.log == [(0, RULES[UNKNOWN])] and plan.react == [] and plan.reply == []


def test_reactions_once_each_and_unclassified_images_follow_the_catch_all():
    plan = plan_message(RULES, [answer("a", 0.6), answer("b", 0.7), None, answer("c", 0.1)])
    assert plan.react == ["👀"] and plan.reply == [3] and not plan.delete
    without_catch_all = {"tulip": RULES["tulip"]}
    assert plan_message(without_catch_all, [None, answer("a", 0.9)]).reply == [0, 1]


def test_a_problem_is_reported_once_per_interval_and_channel():
    reports = ProblemReports(interval_s=60)
    assert reports.due(1, ["no perms", "no emoji"]) == ["no perms", "no emoji"]
    assert reports.due(1, ["no perms"]) == []
    assert reports.due(2, ["no perms"]) == ["no perms"]  # another channel
    assert ProblemReports(interval_s=0).due(1, ["x"]) == ["x"]
