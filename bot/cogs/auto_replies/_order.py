"""Replies in the order the images were posted: each watched channel's messages take a
place in line as they arrive, and a reply goes out only after every message before it
was answered (sent, refused by Discord, or given up), whatever order the classifications
finish in."""

from __future__ import annotations

import asyncio


class ReplyOrder:
    """The line of each channel with a message being answered (forgotten when empty)."""

    def __init__(self) -> None:
        self._last: dict[int, Place] = {}  # channel -> its newest place

    def join(self, channel_id: int) -> Place:
        """A place for a message that just arrived (call before any ``await``, so the
        places follow the gateway's order)."""
        place = Place(self, channel_id, self._last.get(channel_id))
        self._last[channel_id] = place
        return place

    def __len__(self) -> int:
        """Channels with a message being answered."""
        return len(self._last)


class Place:
    """One message's place in its channel's line."""

    def __init__(self, order: ReplyOrder, channel_id: int, before: Place | None) -> None:
        self._order, self._channel_id = order, channel_id
        self._before, self._after = before, None
        if before is not None:
            before._after = self
        self._left = False
        self.through = asyncio.Event()  # this message and every one before it answered

    async def turn(self) -> None:
        """Wait until every message before this one has been answered (or given up)."""
        before = self._before
        if before is not None:
            await before.through.wait()

    def leave(self) -> None:
        """This message is answered (or never will be); idempotent."""
        self._left = True
        place: Place | None = self
        while place is not None and place._left and not place.through.is_set():
            if place._before is not None and not place._before.through.is_set():
                return  # the ones before it are still on their way
            place.through.set()
            place._before = None
            if self._order._last.get(place._channel_id) is place:
                del self._order._last[place._channel_id]
            after, place._after = place._after, None
            place = after
