"""Per-label rules for watched channels: which rule an answer gets, and what a message gets.

Precedence (one rule per label per server):

1. the rule of the answer's label (``unknown`` for an answer the model does not
   recognise), if the answer's confidence is at or above its threshold;
2. otherwise, for an answer that names a label (one that passed the open-set check), the
   catch-all rule ``*``, if the confidence is at or above its threshold;
3. otherwise today's behaviour: a reply.

The catch-all never acts on ``unknown``: a delete or log rule is meant for the server's
subjects, and an image the model does not recognise (a meme, a cat, a screenshot) must
not be deleted because it resembles one a little. Only a rule for ``unknown`` itself acts
on those. For ``unknown`` the confidence is that of the closest known label, so a rule for
``unknown`` with threshold 0 acts on every unrecognised image.

A message with several images: if any image's rule says ``delete``, the ``log`` rules
run first (the image is re-uploaded to the log channel), then the message is deleted and
nothing else happens. Otherwise reactions are added, log posts are made and one reply
carries the answers whose rule is ``reply``. Images that could not be classified are
reported in that reply unless the server has a catch-all rule (then they are skipped).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.cogs.teach import normalize_label
from bot.core.embeds import percent
from bot.core.errors import UserError
from bot.db import ANY_LABEL, LabelRule, RuleAction
from golem_backend import UNKNOWN, Prediction

#: Custom emoji as a user types it in a message: ``<:name:id>`` or ``<a:name:id>``.
CUSTOM_EMOJI = re.compile(r"<(a?):([A-Za-z0-9_]{2,32}):([0-9]{15,21})>")
#: Code points that may appear inside a unicode emoji besides symbols (``So``):
#: ZWJ, variation selectors, the keycap mark, skin tones, tags, and keycap bases.
_EMOJI_JOINERS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}
_KEYCAP_BASES = set("0123456789#*")
EMOJI_MAX_CODEPOINTS = 16


class InvalidRule(UserError):
    """A rule option a user gave is not valid; the message says why."""


def parse_threshold(percent_value: float) -> float:
    """A threshold typed in percent (0-100) as a confidence in [0, 1]."""
    if not math.isfinite(percent_value) or not 0 <= percent_value <= 100:
        raise InvalidRule(
            f"The threshold is a confidence in percent, from 0 to 100 (got {percent_value:g})."
        )
    return round(percent_value / 100, 4)


@dataclass(frozen=True, slots=True)
class EmojiChoice:
    """An emoji as the reaction API takes it: unicode, or a custom emoji's id."""

    text: str  # unicode, or ``<:name:id>``
    custom_id: int | None = None


def parse_emoji(raw: str) -> EmojiChoice:
    """A unicode emoji or ``<:name:id>``; :class:`InvalidRule` for anything else (whether a
    custom emoji belongs to the server is checked by the cog through Discord)."""
    text = raw.strip()
    custom = CUSTOM_EMOJI.fullmatch(text)
    if custom:
        return EmojiChoice(text, int(custom.group(3)))
    if not text or len(text) > EMOJI_MAX_CODEPOINTS or not _looks_like_unicode_emoji(text):
        raise InvalidRule(
            "That is not an emoji: give one unicode emoji (like 🌼) or one of this server's "
            "custom emojis (pick it from the emoji picker)."
        )
    return EmojiChoice(text)


def _looks_like_unicode_emoji(text: str) -> bool:
    """One emoji: a symbol (or a keycap, or a pair of regional indicators, i.e. a flag)
    with its modifiers, possibly joined to more symbols by ZWJ."""
    bases = regional = 0
    joined = False
    for i, char in enumerate(text):
        code = ord(char)
        if unicodedata.category(char) == "So":
            if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicators: two make one flag
                regional += 1
                if regional % 2 == 0:
                    joined = False
                    continue
            if not joined:
                bases += 1
        elif char in _KEYCAP_BASES and text[i + 1 : i + 3] in ("\ufe0f\u20e3", "\u20e3"):
            bases += 1
        elif not (
            code in _EMOJI_JOINERS or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F
        ):
            return False
        joined = code == 0x200D
    return bases == 1 and regional in (0, 2)


def rule_label(raw: str) -> str:
    """A rule's label: ``*`` (any), ``unknown``, or a label in canonical form."""
    text = raw.strip().lower()
    if text in (ANY_LABEL, "any"):
        return ANY_LABEL
    if text == UNKNOWN:
        return UNKNOWN
    return normalize_label(raw)


def choose_rule(rules: Mapping[str, LabelRule], prediction: Prediction) -> LabelRule | None:
    """The rule that applies to ``prediction`` (see the module's precedence), or ``None``
    for today's reply."""
    keys = (UNKNOWN,) if prediction.label == UNKNOWN else (prediction.label, ANY_LABEL)
    for key in keys:
        rule = rules.get(key)
        if rule is not None and prediction.confidence >= rule.threshold:
            return rule
    return None


@dataclass
class MessagePlan:
    """What to do with one message in a watched channel."""

    delete: bool = False
    reply: list[int] = field(default_factory=list)  # indexes of the answers to reply with
    react: list[str] = field(default_factory=list)  # emojis, each once
    log: list[tuple[int, LabelRule]] = field(default_factory=list)  # (answer index, rule)
    deleted_by: LabelRule | None = None


def plan_message(
    rules: Mapping[str, LabelRule], predictions: Iterable[Prediction | None]
) -> MessagePlan:
    """Combine the rules of each image of a message (``None``: not classified)."""
    plan = MessagePlan()
    catch_all = ANY_LABEL in rules
    for i, prediction in enumerate(predictions):
        if prediction is None:
            if not catch_all:
                plan.reply.append(i)
            continue
        rule = choose_rule(rules, prediction)
        action = RuleAction.REPLY if rule is None else rule.action
        if action is RuleAction.REPLY:
            plan.reply.append(i)
        elif action is RuleAction.REACT and rule is not None and rule.emoji:
            if rule.emoji not in plan.react:
                plan.react.append(rule.emoji)
        elif action is RuleAction.LOG and rule is not None:
            plan.log.append((i, rule))
        elif action is RuleAction.DELETE:
            plan.delete = True
            plan.deleted_by = plan.deleted_by or rule
    if plan.delete:
        plan.reply, plan.react = [], []
    return plan


def describe_rule(rule: LabelRule) -> str:
    """One line for /rule list: ``**tulip** ≥ 80%: react 🌷``."""
    who = "any recognised label" if rule.label == ANY_LABEL else rule.label
    what = rule.action.value
    if rule.action is RuleAction.REACT:
        what += f" {rule.emoji}"
    elif rule.action is RuleAction.LOG:
        what += f" to <#{rule.log_channel_id}>"
    return f"**{who}** at {percent(rule.threshold)} or more: {what}"
