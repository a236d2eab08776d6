"""Watching the door (``bot.core.admission``) of a running bot: every turn it releases,
with its path, member, size and server, as the metrics hook sees it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.admission import Admission, Turn


@dataclass(frozen=True)
class SeenTurn:
    path: str
    member_id: int
    images: int
    server_id: int | None


def watch_turns(admission: Admission) -> list[SeenTurn]:
    """The turns released from now on, in order (the admission's own hook still runs)."""
    seen: list[SeenTurn] = []
    previous = admission.on_admitted

    def admitted(turn: Turn) -> None:
        seen.append(SeenTurn(turn.path, turn.member_id, turn.images, turn.server_id))
        if previous is not None:
            previous(turn)

    admission.on_admitted = admitted
    return seen
