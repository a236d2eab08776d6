"""A malformed gateway event is logged and skipped, never fatal.

discord.py reads each event in its gateway's receive loop
(``DiscordWebSocket.received_message``) and hands it to the parser of its type
(``ConnectionState.parse_<event>``, kept in ``ConnectionState.parsers``), still inside that
loop: a parser that raises on a payload it does not expect (a role without a field,
``thread: null``, a GUILD_CREATE missing keys, an interaction with a broken member) ends
the loop, the connection and so the bot. Discord-compatible servers send such payloads
(Spacebar did). :func:`skip_malformed_events` guards every parser in that one table: the
event is logged on one line (its traceback at DEBUG), counted, and skipped; the next event
is served as usual.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from discord.state import ConnectionState

log = logging.getLogger(__name__)

Parser = Callable[[Any], Any]


def skip_malformed_events(
    state: ConnectionState, on_skipped: Callable[[str], None] | None = None
) -> None:
    """Guard each of ``state``'s event parsers (in place: the gateway holds the same table).
    ``on_skipped(event)`` is called for each event skipped (metrics)."""
    parsers: dict[str, Parser] = state.parsers
    for event, parser in list(parsers.items()):
        if not getattr(parser, "skips_malformed", False):
            parsers[event] = _guarded(event, parser, on_skipped)


def _guarded(event: str, parser: Parser, on_skipped: Callable[[str], None] | None) -> Parser:
    @functools.wraps(parser)
    def parse(data: Any) -> Any:
        try:
            return parser(data)
        except Exception as exc:
            log.warning(
                "skipped a malformed %s event from the gateway (%s: %s)",
                event,
                type(exc).__name__,
                exc,
            )
            log.debug("the %s event that could not be read", event, exc_info=exc)
            if on_skipped is not None:
                on_skipped(event)
            return None

    parse.skips_malformed = True  # type: ignore[attr-defined]
    return parse
