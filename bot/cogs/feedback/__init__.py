"""Feedback: "Right" / "Wrong..." under a server's answers, corrections, and /review.

Owns the vote buttons and what they do (``_votes.py``), the review queue's pages and
buttons (``_review.py``) and ``FeedbackCog`` with /review (``_cog.py``). A correction or a
relabel picks its label with the teach feature's label picker (targets ``a<answer id>``
and ``r<item id>``, registered in :func:`setup`) and is taught through ``teach_images``.

Other features may use :func:`open_answers`: it records a server's answered images and
returns their feedback buttons (``None`` outside servers). The dashboard decides waiting
corrections with :func:`approve_review` and :func:`reject_review` (a
:class:`ReviewDecision`), the functions /review's buttons use.
"""

from __future__ import annotations

from bot.cogs.feedback._cog import FeedbackCog
from bot.cogs.feedback._review import (
    ReviewButton,
    ReviewDecision,
    approve_review,
    decide_picked,
    reject_review,
)
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
    "reject_review",
    "setup",
    "teardown",
]

DYNAMIC_ITEMS = (VoteButton, ReviewButton)


async def setup(bot: ClassifierBot) -> None:
    bot.add_dynamic_items(*DYNAMIC_ITEMS)  # the buttons keep working after a restart
    add_label_target(bot, "a", LabelTarget(correct_picked, members_may_pick=True))
    add_label_target(bot, "r", LabelTarget(decide_picked))
    await bot.add_cog(FeedbackCog(bot))


async def teardown(bot: ClassifierBot) -> None:
    bot.remove_dynamic_items(*DYNAMIC_ITEMS)
    remove_label_target(bot, "a")
    remove_label_target(bot, "r")
