"""Rules: what the bot does with an image in a watched channel (reply, react, log to a
channel, delete, or nothing), per label; ``/rule set|list|remove``.

Owns ``RulesCog`` (``_cog.py``), choosing a rule and planning a message (``_rules.py``:
the precedence is documented there) and carrying a plan out (``_actions.py``: every
refusal by Discord is logged and reported in the channel, never raised).

Other features may use :func:`plan_message` and :func:`carry_out` with
:class:`ProblemReports` (the auto-replies run a message's rules with them) and
:func:`send_reply` (a reply that pings nobody and survives a deleted message). The
dashboard changes rules with :func:`set_rule`, :func:`remove_rule` and
:func:`server_rules` (``_rule_changes.py``), the functions the commands use.
"""

from __future__ import annotations

from bot.cogs.rules._actions import ProblemReports, carry_out, send_reply
from bot.cogs.rules._cog import RulesCog
from bot.cogs.rules._rule_changes import RuleSet, remove_rule, server_rules, set_rule
from bot.cogs.rules._rules import plan_message
from bot.core.client import ClassifierBot

__all__ = [
    "ProblemReports",
    "RuleSet",
    "RulesCog",
    "carry_out",
    "plan_message",
    "remove_rule",
    "send_reply",
    "server_rules",
    "set_rule",
    "setup",
]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(RulesCog(bot))
