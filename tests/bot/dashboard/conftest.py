"""The dashboard tests' fixtures: a running bot with its dashboard beside the Discord
simulator (``dash``; parametrise it indirectly with settings for the bot's environment),
and an HTTP client that keeps cookies as a browser does (``http``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.bot.dashboard_world import DashboardWorld, http_client, running_world


@pytest_asyncio.fixture
async def dash(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[DashboardWorld]:
    async with running_world(tmp_path, env=getattr(request, "param", {})) as world:
        yield world


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client
