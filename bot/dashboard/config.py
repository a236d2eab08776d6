"""What the dashboard needs to know, taken from the bot's settings once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.core.settings import Settings

SCOPES = ("identify", "guilds")


class DashboardNotConfigured(Exception):
    """``DASHBOARD_PUBLIC_URL`` (and with it the OAuth2 client) is not set."""


@dataclass(frozen=True)
class DashboardConfig:
    public_url: str  # e.g. https://bot.example.com/dashboard (no trailing slash)
    client_id: int
    client_secret: str = field(repr=False)
    session_secret: str = field(repr=False)
    bot_token: str = field(repr=False)
    api_base: str = "https://discord.com/api/v10"
    session_lifetime_s: float = 12 * 3600.0
    access_recheck_s: float = 30.0
    operator_ids: frozenset[int] = frozenset()
    login_lifetime_s: float = 600.0  # from "Log in" to Discord's redirect back

    @classmethod
    def from_settings(cls, settings: Settings) -> DashboardConfig:
        if (
            settings.dashboard_public_url is None
            or settings.discord_client_id is None
            or settings.discord_client_secret is None
            or settings.dashboard_session_secret is None
        ):
            raise DashboardNotConfigured(
                "The dashboard needs DASHBOARD_PUBLIC_URL, DISCORD_CLIENT_ID, "
                "DISCORD_CLIENT_SECRET and DASHBOARD_SESSION_SECRET."
            )
        return cls(
            public_url=settings.dashboard_public_url,
            client_id=settings.discord_client_id,
            client_secret=settings.discord_client_secret.get_secret_value(),
            session_secret=settings.dashboard_session_secret.get_secret_value(),
            bot_token=settings.discord_token.get_secret_value(),
            api_base=settings.discord_api_base.rstrip("/"),
            session_lifetime_s=settings.dashboard_session_hours * 3600.0,
            access_recheck_s=settings.dashboard_access_recheck_s,
            operator_ids=frozenset(settings.admin_user_ids),
        )

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the public URL: what browsers send as ``Origin``."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def base_path(self) -> str:
        """The public URL's path (``""`` at the root): where the cookies apply."""
        return urlsplit(self.public_url).path.rstrip("/")

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """Register this in the Developer Portal (OAuth2 > Redirects)."""
        return self.public_url + "/callback"

    @property
    def oauth2_base(self) -> str:
        """Discord's OAuth2 flow lives beside the versioned API: ``.../api/oauth2``."""
        return re.sub(r"/v\d+$", "", self.api_base) + "/oauth2"

    @property
    def authorize_url(self) -> str:
        return self.oauth2_base + "/authorize"

    @property
    def token_url(self) -> str:
        return self.oauth2_base + "/token"
