"""Ids carried in the custom ids of persistent components and modals, and what a forged
one may hold.

Every id in a custom id comes back from the member's client, and a modified client can
send any text (a modal's custom id is not checked against anything). The patterns here
match any run of ASCII digits a custom id can hold (Discord caps a custom id at 100
characters), so that a forged id still reaches its action, which then says plainly that
the thing is gone; the parsers turn the digits into a number only when it can name
something: a row id (``1..2^31-1``, the database's ids) or a Discord snowflake
(``1..2^63-1``). Anything else, zero, 2^63, a hundred digits, is ``None``: no lookup, no
request to Discord, no traceback.

``[0-9]``, not ``\\d``: ``\\d`` matches other scripts' digits too, which ``int()`` reads.
"""

from __future__ import annotations

from bot.db.scope_base import ID_MAX

#: A custom id is at most this long (Discord's limit), so no id in it is longer.
CUSTOM_ID_MAX = 100
#: Digits as a custom id carries them (bounded by the custom id's length).
DIGITS = rf"[0-9]{{1,{CUSTOM_ID_MAX}}}"
#: The largest id of a database row (``Integer`` on PostgreSQL).
ROW_ID_MAX = ID_MAX
#: The largest Discord snowflake (a signed 64-bit integer).
SNOWFLAKE_MAX = 2**63 - 1
#: The largest page number a picker shows (anything beyond is the last page).
PAGE_MAX = 10_000


def parse_id(text: str, maximum: int) -> int | None:
    """``text`` as an id in ``1..maximum``, else ``None`` (its length is checked before
    it is read as a number)."""
    if not 0 < len(text) <= len(str(maximum)) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= maximum else None


def row_id(text: str) -> int | None:
    """A database row's id (an answer, a review item), or ``None``."""
    return parse_id(text, ROW_ID_MAX)


def snowflake(text: str) -> int | None:
    """A Discord id (a channel, a message, a member), or ``None``."""
    return parse_id(text, SNOWFLAKE_MAX)


def page_number(text: str) -> int:
    """A picker's page (0-based): past :data:`PAGE_MAX` (or unreadable) it is the last
    page, which the picker clamps to the pages it has."""
    value = parse_id(text, PAGE_MAX) if text != "0" else 0
    return PAGE_MAX if value is None else value
