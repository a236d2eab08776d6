"""The bot's settings: one typed object read from the environment and ``.env``.

``Settings`` extends the backend's settings, so a single object configures the whole
product. Every field is documented in ``.env.example`` (overview: docs/operating.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from golem_backend.settings import BackendSettings

log = logging.getLogger(__name__)

#: Hosts Discord serves attachments from; ``DISCORD_CDN_HOSTS`` adds more.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


def _split_csv(value: object) -> object:
    """Accept ``"a, b,c"`` (and a single int) as well as real lists."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


#: Settings of earlier versions, and why they went (a warning when one is still set).
REMOVED_SETTINGS = {
    "MAX_CONCURRENT_REQUESTS": (
        "requests now queue at the door and are refused only past MAX_QUEUE_WAIT_S of "
        "expected wait (docs/operating.md, Admission); remove it from .env"
    ),
}


class Settings(BackendSettings):
    # --- Discord connection -----------------------------------------------------------
    discord_token: SecretStr
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_cdn_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    message_content_intent: bool = False
    dev_guild_id: int | None = None
    sync_commands: bool = True
    # faults: every REST call bounded; the first gateway connection and a failed command
    # sync retried with back-off
    discord_request_timeout_s: float = Field(30.0, ge=1, le=600)
    gateway_connect_timeout_s: float = Field(120.0, ge=1, le=3600)
    command_sync_retry_s: float = Field(60.0, gt=0, le=3600)
    command_sync_retry_max_s: float = Field(3600.0, gt=0, le=86400)

    # --- who may do what --------------------------------------------------------------
    admin_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    autoclassify_channel_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # --- limits -----------------------------------------------------------------------
    cooldown_uses: int = Field(5, ge=1, le=1000)
    cooldown_window_s: float = Field(30.0, gt=0, le=3600)
    # admission by expected wait (bot/core/admission.py): refused past this many seconds
    max_queue_wait_s: float = Field(10.0, gt=0, le=300)
    max_images_per_message: int = Field(4, ge=1, le=10)
    download_timeout_s: float = Field(15.0, gt=0, le=300)
    low_confidence: float = Field(0.5, ge=0, le=1)
    shutdown_grace_s: float = Field(10.0, ge=0, le=300)
    progress_interval_s: float = Field(2.0, ge=0.1, le=60)

    # --- database and per-server data (bot/db) ----------------------------------------
    database_url: SecretStr | None = None  # default: sqlite+aiosqlite:///<DATA_DIR>/bot.db
    guild_max_labels: int = Field(50, ge=1, le=10_000)
    guild_max_taught_images: int = Field(2000, ge=1, le=10_000_000)
    guild_max_taught_bytes: int = Field(500_000_000, ge=1, le=10**13)
    guild_max_retrains_per_hour: int = Field(6, ge=1, le=1000)
    guild_data_retention_days: float = Field(30.0, ge=0, le=3650)
    retention_check_interval_s: float = Field(3600.0, gt=0, le=86_400)
    # feedback on answers (issue 11): what is kept so that a correction can teach it
    feedback_images_kept: int = Field(200, ge=0, le=100_000)
    feedback_window_hours: float = Field(24.0, gt=0, le=24 * 90)
    review_queue_max: int = Field(100, ge=1, le=100_000)
    review_max_per_member: int = Field(3, ge=1, le=1000)  # waiting corrections per member
    # votes and corrections per member per window (a "Right", a label picked after "Wrong...")
    feedback_cooldown_uses: int = Field(10, ge=1, le=1000)
    feedback_cooldown_window_s: float = Field(60.0, gt=0, le=3600)
    # a zip of labelled images (bot/cogs/teach/_archive.py); one image's limit is MAX_IMAGE_BYTES
    archive_max_bytes: int = Field(100_000_000, ge=1024, le=10**10)
    archive_max_entries: int = Field(2000, ge=1, le=100_000)
    archive_max_total_bytes: int = Field(256_000_000, ge=1024, le=10**11)
    archive_max_ratio: float = Field(100.0, ge=1, le=10_000)
    # /teach from-channel: the largest `limit` of images, and how many messages it reads
    teach_channel_max_images: int = Field(500, ge=1, le=100_000)
    teach_channel_max_messages: int = Field(5000, ge=1, le=1_000_000)

    # --- logging ----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # --- sharding (unset: one connection; set: AutoShardedBot) ----------------------
    shard_count: int | None = Field(None, ge=1, le=16384)
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # --- health and metrics endpoint (off unless HTTP_PORT is set) ----------------------
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(None, ge=0, le=65535)

    # --- web dashboard (bot/dashboard; off unless DASHBOARD_PUBLIC_URL is set) -----------
    dashboard_public_url: str | None = None
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8081, ge=0, le=65535)
    discord_client_id: int | None = None
    discord_client_secret: SecretStr | None = None
    dashboard_session_secret: SecretStr | None = None
    dashboard_session_hours: float = Field(12.0, gt=0, le=24 * 30)
    dashboard_access_recheck_s: float = Field(30.0, ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: object) -> object:
        """A setting this version no longer has, still in an old ``.env`` or environment:
        a warning, never a failed start (``.env`` hands it over here; the environment
        does not, so it is looked up there)."""
        if not isinstance(data, dict):
            return data
        for name, why in REMOVED_SETTINGS.items():
            given = [key for key in data if key.lower() == name.lower()]
            for key in given:
                data = {k: v for k, v in data.items() if k != key}
            if given or any(key.upper() == name for key in os.environ):
                log.warning("%s is no longer used and is ignored: %s", name, why)
        return data

    @field_validator(
        "discord_cdn_hosts",
        "admin_user_ids",
        "autoclassify_channel_ids",
        "shard_ids",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("discord_cdn_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        hosts = []
        for host in value:
            host = host.strip().lower().rstrip(".")
            if not host or "/" in host or ":" in host or " " in host:
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path)")
            hosts.append(host)
        return hosts

    @field_validator("discord_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip().removeprefix("Bot ")
        if not token or any(c.isspace() for c in token):
            raise ValueError("DISCORD_TOKEN is empty or contains whitespace")
        return SecretStr(token)

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"{value!r} is not an http(s)/ws(s) URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                url = driver + url.removeprefix(plain)
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "DATABASE_URL must be sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db"
            )
        return SecretStr(url)

    @property
    def database_url_value(self) -> str:
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir / 'bot.db'}"
        return self.database_url.get_secret_value()

    def secret_values(self) -> list[str]:
        """Every secret this process may hold, for the logs to redact: the bot token, the
        yagna app key (set, or the first line of ``YAGNA_APPKEY_FILE`` when it can be read),
        the database password, the OAuth2 client secret and the session key."""
        values = [self.discord_token.get_secret_value()]
        for secret in (
            self.yagna_appkey,
            self.discord_client_secret,
            self.dashboard_session_secret,
        ):
            if secret is not None:
                values.append(secret.get_secret_value())
        if self.yagna_appkey_file is not None:
            try:
                with self.yagna_appkey_file.open("rb") as fh:
                    first = fh.read(4096).decode("utf-8", "replace").splitlines()[:1]
            except OSError:
                first = []
            values.extend(line.strip() for line in first)
        password = urlsplit(self.database_url_value).password
        if password:
            values.extend({password, unquote(password)})
        return [v for v in values if v]

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "shard_count",
        "http_port",
        "dashboard_public_url",
        "discord_client_id",
        "discord_client_secret",
        "dashboard_session_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("http_host", "dashboard_host")
    @classmethod
    def _http_host(cls, value: str) -> str:
        host = value.strip()
        if not host or "/" in host or " " in host:
            raise ValueError(f"{value!r} is not a host name or IP address to bind")
        return host

    @field_validator("dashboard_public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")) or any(c in url for c in "?# "):
            raise ValueError(f"{value!r} is not an http(s) URL without query or fragment")
        return url

    @model_validator(mode="after")
    def _dashboard(self) -> Settings:
        if self.dashboard_public_url is None:
            return self
        missing = [
            name.upper()
            for name in ("discord_client_id", "discord_client_secret", "dashboard_session_secret")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"DASHBOARD_PUBLIC_URL is set: {', '.join(missing)} must be too")
        secret = self.dashboard_session_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("DASHBOARD_SESSION_SECRET must be at least 32 characters")
        if self.dashboard_port != 0 and self.dashboard_port == self.http_port:
            raise ValueError(
                f"DASHBOARD_PORT and HTTP_PORT are both {self.http_port}: the dashboard and the "
                "health and metrics endpoint are separate listeners; give them different ports"
            )
        return self

    @model_validator(mode="after")
    def _shards(self) -> Settings:
        if self.shard_ids:
            if self.shard_count is None:
                raise ValueError("SHARD_IDS needs SHARD_COUNT (the total number of shards)")
            wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if wrong:
                raise ValueError(f"SHARD_IDS {wrong} not in 0..{self.shard_count - 1}")
            if len(set(self.shard_ids)) != len(self.shard_ids):
                raise ValueError("SHARD_IDS lists a shard twice")
        return self

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @property
    def attachment_hosts(self) -> frozenset[str]:
        return frozenset((*DISCORD_CDN_HOSTS, *self.discord_cdn_hosts))

    @property
    def state_path(self) -> Path:
        return self.data_dir / "bot-state.json"
