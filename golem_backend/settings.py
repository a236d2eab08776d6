"""Backend settings, read from the environment and ``.env``.

The bot's ``Settings`` inherits this class, so the whole product has one settings object.
Every field is documented in ``.env.example``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackendSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- common -----------------------------------------------------------------------
    backend: Literal["local", "golem"] = "local"
    data_dir: Path = Path("var")  # models, feature cache, taught images, bot state
    dataset_dir: Path | None = None  # retrain dataset; None = the copy the package ships
    top_k: int = Field(3, ge=1, le=10)
    request_timeout_s: float = Field(30.0, gt=0, le=600)
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    max_image_pixels: int = Field(40_000_000, ge=10_000, le=500_000_000)

    # --- local backend ------------------------------------------------------------------
    local_workers: int = Field(2, ge=1, le=64)
    queue_size: int = Field(64, ge=1, le=10_000)

    # --- golem backend ------------------------------------------------------------------
    yagna_appkey: SecretStr | None = None
    yagna_api_url: str = "http://127.0.0.1:7465"
    golem_subnet: str = "public"
    golem_payment_driver: str = "erc20"
    golem_payment_network: str = "hoodi"
    golem_budget_glm: float = Field(1.0, gt=0)
    golem_image_hash: str | None = None
    golem_image_url: str | None = None
    golem_instances: int = Field(1, ge=1, le=32)
    golem_batch_size: int = Field(8, ge=1, le=64)
    golem_batch_wait_ms: float = Field(15.0, ge=0, le=1000)
    golem_max_retries: int = Field(2, ge=0, le=10)
    golem_expiration_min: float = Field(180.0, ge=5)
    golem_replace_before_min: float = Field(20.0, ge=1)
    golem_start_timeout_s: float = Field(60.0, gt=0)

    @property
    def model_path(self) -> Path:
        return self.data_dir / "models" / "current.model"

    @property
    def cache_path(self) -> Path:
        return self.data_dir / "features.h5"
