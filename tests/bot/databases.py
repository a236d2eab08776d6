"""Real databases for the store's tests: a SQLite file, and a fresh database on the
PostgreSQL server named by ``TEST_POSTGRES_URL`` (``.ci/with-postgres.sh`` starts one).

Without that variable the PostgreSQL cases skip with the reason; in CI (``CI=true``) they
fail instead, since CI must provide the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

ENGINES = ("sqlite", "postgresql")


def postgres_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL", "")
    if not url:
        reason = "TEST_POSTGRES_URL is not set (run the tests through .ci/with-postgres.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must provide PostgreSQL")
        pytest.skip(reason)
    return url


@asynccontextmanager
async def database_url(engine: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database of ``engine``, dropped afterwards."""
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    import asyncpg

    base = postgres_url()
    plain = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(plain)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
