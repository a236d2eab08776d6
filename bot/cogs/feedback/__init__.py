"""Feedback: "Right" / "Wrong..." under a server's answers, corrections, and /review.

Owns the vote buttons and what they do (``_votes.py``, with the per-member feedback
cooldown of ``_cooldown.py``), the review queue's pages and buttons (``_review.py``), the
decisions on waiting corrections (``_decisions.py``) and ``FeedbackCog`` with /review
(``_cog.py``). A correction or a
relabel picks its label with the teach feature's label picker (targets ``a<answer id>``
and ``r<item id>``, registered in :func:`setup`) and is taught through ``teach_images``.

Other features may use :func:`open_answers`: it records a server's answered images and
returns their feedback buttons (``None`` outside servers). The dashboard decides waiting
corrections with :func:`approve_review`, :func:`reject_review` (a :class:`ReviewDecision`)
and :func:`reject_member_reviews`, the functions /review's buttons use, each given the
reviewer's :class:`~bot.core.channel_access.ChannelViewer`.
"""

from __future__ import annotations

from bot.cogs.feedback._cog import FeedbackCog
from bot.cogs.feedback._decisions import (
    ReviewDecision,
    approve_review,
    reject_member_reviews,
    reject_review,
)
from bot.cogs.feedback._review import RejectMemberButton, ReviewButton, decide_picked
from bot.cogs.feedback._votes import GONE, REPLACED, VoteButton, correct_picked, open_answers
from bot.cogs.teach import LabelTarget, add_label_target, remove_label_target
from bot.core.client import ClassifierBot

__all__ = [
    "GONE",
    "REPLACED",
    "FeedbackCog",
    "ReviewDecision",
    "approve_review",
    "open_answers",
    "reject_member_reviews",
    "reject_review",
    "setup",
    "teardown",
]

DYNAMIC_ITEMS = (VoteButton, ReviewButton, RejectMemberButton)


async def setup(bot: ClassifierBot) -> None:
    bot.add_dynamic_items(*DYNAMIC_ITEMS)  # the buttons keep working after a restart
    add_label_target(bot, "a", LabelTarget(correct_picked, members_may_pick=True))
    add_label_target(bot, "r", LabelTarget(decide_picked))
    await bot.add_cog(FeedbackCog(bot))


async def teardown(bot: ClassifierBot) -> None:
    bot.remove_dynamic_items(*DYNAMIC_ITEMS)
    remove_label_target(bot, "a")
    remove_label_target(bot, "r")
