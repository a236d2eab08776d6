"""Who is calling: the bot token in ``Authorization: Bot <token>``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from tests.discord_sim.model import Application
from tests.discord_sim.validation import DiscordError

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator


def bot_app(sim: DiscordSimulator, request: web.Request) -> Application:
    """The application whose bot token authorises ``request``, else 401 as Discord answers."""
    header = request.headers.get("Authorization", "")
    app = sim.apps_by_token.get(header.removeprefix("Bot ")) if header.startswith("Bot ") else None
    if app is None:
        raise DiscordError(401, 0, "401: Unauthorized")
    return app
