"""Backend settings, read from the environment and ``.env``.

The bot's ``Settings`` inherits this class, so the whole product has one settings object.
Every field is documented in ``.env.example``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A Golem VM image hash: the sha3-224 of the .gvmi file, as ``gvmkit-build --push`` prints it.
_IMAGE_HASH = re.compile(r"[0-9a-f]{56}")


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
    # Retrains (the default model and servers' heads) running at once, over all servers.
    retrain_concurrency: int = Field(1, ge=1, le=16)
    # Deadline of one retrain, waiting for its turn included.
    retrain_timeout_s: float = Field(300.0, gt=0, le=24 * 3600)

    # --- local backend ------------------------------------------------------------------
    local_workers: int = Field(2, ge=1, le=64)
    queue_size: int = Field(64, ge=1, le=10_000)
    # Images per forward pass through the CNN; concurrent requests share one batch.
    local_batch_size: int = Field(8, ge=1, le=256)
    # How long an idle worker waits for more images before running a small batch.
    local_batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    # Native (OpenCV/BLAS) threads per worker; 0 = the usable cores divided among the workers.
    local_worker_threads: int = Field(0, ge=0, le=64)
    # Memory each worker may spend on servers' heads kept loaded (least recently used dropped).
    head_cache_mb: float = Field(256.0, ge=1, le=64 * 1024)

    # --- golem backend ------------------------------------------------------------------
    yagna_appkey: SecretStr | None = None
    # A file holding the app key instead (compose: written by the yagna service's init step
    # into a shared volume); read at start, never logged. YAGNA_APPKEY wins when both are set.
    yagna_appkey_file: Path | None = None
    yagna_api_url: str = "http://127.0.0.1:7465"
    golem_subnet: str = "public"
    golem_payment_driver: str = "erc20"
    golem_payment_network: str = "hoodi"
    golem_budget_glm: float = Field(1.0, gt=0, le=1000)
    golem_image_hash: str | None = None
    golem_image_url: str | None = None
    golem_instances: int = Field(1, ge=1, le=32)
    golem_batch_size: int = Field(8, ge=1, le=64)
    golem_batch_wait_ms: float = Field(15.0, ge=0, le=1000)
    golem_max_retries: int = Field(2, ge=0, le=10)
    golem_expiration_min: float = Field(180.0, ge=5, le=24 * 60)
    golem_replace_before_min: float = Field(20.0, ge=1)
    golem_start_timeout_s: float = Field(60.0, gt=0, le=1800)
    golem_script_timeout_s: float = Field(20.0, gt=0, le=600)  # one batch on a provider
    golem_queue_size: int = Field(64, ge=1, le=10_000)  # waiting requests before BackendBusy
    golem_min_mem_gib: float = Field(2.0, gt=0)  # provider requirements of the VM image
    golem_min_storage_gib: float = Field(4.0, gt=0)
    golem_min_cpu_threads: int = Field(1, ge=1, le=64)
    # Elastic instances: unset = GOLEM_INSTANCES for both (a fixed number). A minimum of 0
    # scales to zero after GOLEM_SCALE_DOWN_IDLE_S without requests; the next request
    # starts an instance (the local fallback answers meanwhile with GOLEM_FALLBACK=local).
    golem_min_instances: int | None = Field(None, ge=0, le=32)
    golem_max_instances: int | None = Field(None, ge=1, le=32)
    # Scale up when the oldest request has waited this long, or this many wait, for
    # GOLEM_SCALE_UP_AFTER_S; scale down after GOLEM_SCALE_DOWN_IDLE_S without a queue.
    golem_scale_up_wait_s: float = Field(5.0, gt=0, le=600)
    golem_scale_up_depth: int = Field(16, ge=1, le=10_000)
    golem_scale_up_after_s: float = Field(30.0, ge=0, le=3600)
    golem_scale_down_idle_s: float = Field(300.0, ge=0, le=24 * 3600)
    # Price caps (GLM); offers above any of them are rejected, never signed.
    golem_max_glm_per_cpu_hour: float = Field(0.1, ge=0, le=100)
    golem_max_glm_per_env_hour: float = Field(0.05, ge=0, le=100)
    golem_max_glm_per_start: float = Field(0.01, ge=0, le=100)
    # Providers by node id (0x...) or name, comma-separated; empty = no restriction.
    golem_provider_allow: str = ""
    golem_provider_deny: str = ""
    # An instance is added only if the remaining budget pays for all of them this long.
    golem_budget_period_min: float = Field(60.0, gt=0, le=24 * 60)
    # "local": the embedded local backend answers whenever no Golem instance runs.
    golem_fallback: Literal["none", "local"] = "none"
    # How often a failed Golem connection is retried while the fallback serves.
    golem_reconnect_s: float = Field(60.0, gt=0, le=3600)
    # stop(): agreements ended and paid within this bound, even if yagna hangs.
    golem_stop_timeout_s: float = Field(30.0, gt=0, le=600)
    # Health of each instance: its last GOLEM_HEALTH_WINDOW batches are judged; past
    # GOLEM_HEALTH_MAX_BAD_RATIO of bad ones (refused, or readable images called broken),
    # once it has ended GOLEM_HEALTH_MIN_BATCHES, it is replaced.
    golem_health_window: int = Field(20, ge=1, le=1000)
    golem_health_max_bad_ratio: float = Field(0.5, gt=0, le=1)
    golem_health_min_batches: int = Field(4, ge=1, le=1000)
    # Share of batches (after each instance's first, which always has some) carrying a
    # canary image of known answer; 0 = only the first batch and the probes after timeouts.
    golem_canary_rate: float = Field(0.1, ge=0, le=1)

    @field_validator(
        "dataset_dir", "golem_image_hash", "golem_image_url", "yagna_appkey_file", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``DATASET_DIR=`` (an empty line in ``.env``) means "not set", not "."."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir")
    @classmethod
    def _writable_dir(cls, value: Path) -> Path:
        existing = value
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # the folder DATA_DIR would be created in
        if not existing.is_dir():
            what = (
                "is not a folder"
                if existing == value
                else f"cannot be created ({existing} is a file)"
            )
            raise ValueError(f"DATA_DIR {value} {what}")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"DATA_DIR {value}: {existing} is not writable")
        return value

    @field_validator("dataset_dir")
    @classmethod
    def _existing_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"DATASET_DIR {value} is not an existing folder")
        return value

    @field_validator("yagna_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"YAGNA_API_URL {value!r} is not an http(s) URL")
        return value

    @field_validator("golem_image_hash")
    @classmethod
    def _image_hash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalized = value.strip().lower().removeprefix("sha3:")  # as gvmkit-build prints it
        if not _IMAGE_HASH.fullmatch(normalized):
            raise ValueError(
                "GOLEM_IMAGE_HASH must be the 56 hex digits (sha3-224) printed by "
                f"`gvmkit-build --push`, got {value[:80]!r}"
            )
        return normalized

    @field_validator("golem_provider_allow", "golem_provider_deny")
    @classmethod
    def _provider_list(cls, value: str) -> str:
        for item in _split_list(value):
            if any(ch.isspace() for ch in item) or len(item) > 128:
                raise ValueError(
                    f"provider list entry {item[:80]!r} is not a node id or name "
                    "(comma-separated, no spaces)"
                )
        return value

    @model_validator(mode="after")
    def _instance_range(self) -> Self:
        low, high = self.min_instances, self.max_instances
        if low > high:
            raise ValueError(
                f"GOLEM_MIN_INSTANCES ({low}) must not exceed GOLEM_MAX_INSTANCES ({high})"
            )
        both = set(self.provider_allow) & set(self.provider_deny)
        if both:
            raise ValueError(
                f"providers both allowed and denied: {', '.join(sorted(both))} "
                "(GOLEM_PROVIDER_ALLOW / GOLEM_PROVIDER_DENY)"
            )
        return self

    @model_validator(mode="after")
    def _golem_timeouts(self) -> Self:
        if self.backend == "golem" and self.golem_script_timeout_s >= self.request_timeout_s:
            raise ValueError(
                f"GOLEM_SCRIPT_TIMEOUT_S ({self.golem_script_timeout_s:g}) must be less than "
                f"REQUEST_TIMEOUT_S ({self.request_timeout_s:g}): a request must outlive the "
                "provider script that serves it, or it times out before a retry can help"
            )
        return self

    @property
    def min_instances(self) -> int:
        """Golem instances always kept (GOLEM_MIN_INSTANCES, else GOLEM_INSTANCES)."""
        if self.golem_min_instances is not None:
            return self.golem_min_instances
        return self.golem_instances

    @property
    def max_instances(self) -> int:
        """Most Golem instances (GOLEM_MAX_INSTANCES, else GOLEM_INSTANCES, at least min)."""
        if self.golem_max_instances is not None:
            return self.golem_max_instances
        return max(self.golem_instances, self.golem_min_instances or 1)

    @property
    def provider_allow(self) -> frozenset[str]:
        return frozenset(_split_list(self.golem_provider_allow))

    @property
    def provider_deny(self) -> frozenset[str]:
        return frozenset(_split_list(self.golem_provider_deny))

    @property
    def model_path(self) -> Path:
        return self.data_dir / "models" / "current.model"

    @property
    def head_cache_bytes(self) -> int:
        return int(self.head_cache_mb * 2**20)

    @property
    def cache_path(self) -> Path:
        return self.data_dir / "features.h5"


def _split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (node ids compared in lower case)."""
    items = (item.strip() for item in value.split(","))
    return [item.lower() if item.startswith("0x") else item for item in items if item]
