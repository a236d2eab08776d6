"""Opt-in: the Golem backend against the real network (spends test GLM on hoodi).

Runs only with GOLEM_LIVE=1 and a configured requestor: a running yagna with a funded
hoodi account, YAGNA_APPKEY, GOLEM_IMAGE_HASH of a pushed image (see docs/golem.md), and
``gftp`` on PATH. Settings come from the environment / .env like the bot's.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from golem_backend.base import BackendUnavailable
from golem_backend.settings import BackendSettings
from provider.results import Prediction

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("GOLEM_LIVE") != "1",
        reason="live Golem test: set GOLEM_LIVE=1 (needs yagna, funded hoodi GLM, image hash)",
    ),
]

FLOWERS = Path(__file__).resolve().parents[2] / "provider" / "data" / "flowers17"


async def test_classify_on_a_real_provider() -> None:
    from golem_backend.golem.backend import GolemBackend

    settings = BackendSettings(backend="golem", golem_instances=1)
    if settings.golem_payment_network != "hoodi":
        pytest.fail("the live test only runs on hoodi (test GLM); set GOLEM_PAYMENT_NETWORK")
    images = sorted(p for p in FLOWERS.rglob("*") if p.suffix.lower() in {".jpg", ".png"})[:3]
    assert images, f"no test images under {FLOWERS}"
    backend = GolemBackend(settings)
    try:
        await backend.start()
    except BackendUnavailable as exc:
        pytest.fail(f"Golem backend could not start: {exc}")
    try:
        deadline = time.monotonic() + 900  # finding a provider and deploying takes minutes
        while not (await backend.status()).ready:
            assert time.monotonic() < deadline, "no provider started the classifier in 15 min"
            await asyncio.sleep(5)
        outcomes = await backend.classify([p.read_bytes() for p in images], top_k=3)
        assert len(outcomes) == len(images)
        status = await backend.status()
        for outcome in outcomes:
            assert isinstance(outcome, Prediction)
            assert outcome.label in status.labels or outcome.is_unknown
            assert outcome.model_id == status.model_id
        assert status.instances and status.instances[0].state == "running"
    finally:
        await backend.stop()
