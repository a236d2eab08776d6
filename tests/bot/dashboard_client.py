"""Talking to the dashboard as a browser does, for the HTTP tests: pages, form posts with
the CSRF token and the Origin header, uploads as the page's form or its script sends them,
and a waiting correction as a member's "Wrong..." leaves it."""

from __future__ import annotations

import html
import re
from typing import Any

import aiohttp

from tests.bot.dashboard_world import DashboardWorld, csrf_token_of
from tests.bot.harness import png_bytes
from tests.discord_sim.model import User


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text(errors="replace")


async def token(dash: DashboardWorld, http: aiohttp.ClientSession) -> str:
    return csrf_token_of((await get(http, dash.url + "/servers"))[1])


async def post(
    dash: DashboardWorld,
    http: aiohttp.ClientSession,
    url: str,
    data: dict[str, str] | None = None,
    *,
    csrf: str | None = "",
) -> tuple[int, str, str]:
    """A form POST as the browser sends it; (status, Location, the page it leads to)."""
    form = dict(data or {})
    if csrf is not None:
        form["csrf_token"] = csrf or await token(dash, http)
    async with http.post(
        url, data=form, headers={"Origin": dash.url}, allow_redirects=False
    ) as resp:
        status, location, body = resp.status, resp.headers.get("Location", ""), await resp.text()
    if status == 302 and location:
        _, body = await get(http, dash.config.origin + location)
    return status, location, body


def flash_of(page: str) -> str:
    found = re.search(r'<p class="flash [a-z]+" role="\w+">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else ""


async def upload(
    dash: DashboardWorld,
    http: aiohttp.ClientSession,
    server: str,
    files: list[tuple[str, bytes]],
    label: str = "",
    *,
    as_json: bool = True,
    csrf: str | None = "",
) -> tuple[int, Any]:
    """The upload as the page's script sends it (CSRF header, JSON answer), or as the form
    does (``as_json=False``: the field first, the report page back)."""
    form = aiohttp.FormData()
    headers = {"Origin": dash.url}
    secret = csrf if csrf is None else (csrf or await token(dash, http))
    if as_json:
        headers["Accept"] = "application/json"
        if secret is not None:
            headers["X-CSRF-Token"] = secret
    elif secret is not None:
        form.add_field("csrf_token", secret)
    form.add_field("label", label)
    for name, data in files:
        form.add_field("files", data, filename=name, content_type="image/jpeg")
    async with http.post(
        dash.guild_url(server, "/upload"), data=form, headers=headers, allow_redirects=False
    ) as resp:
        if as_json and resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def taught(dash: DashboardWorld, server: str) -> dict[str, int]:
    return await dash.store.guild(dash.guilds[server].id).label_counts()


async def queue_correction(
    dash: DashboardWorld,
    server: str,
    label: str,
    colour: str = "red",
    *,
    channel_id: int = 1,
    sender: User | None = None,
    author: User | None = None,
) -> int:
    """A member's correction waiting in ``server``'s queue (as "Wrong..." leaves one): of
    an answer given in ``channel_id`` (1 by default: a channel the bot does not know),
    sent by ``sender`` (carol) about an image ``author`` posted (the sender)."""
    sender = sender or dash.carol
    scope = dash.store.guild(dash.guilds[server].id)
    answer_id = await scope.record_answer(
        channel_id=channel_id,
        user_id=sender.id,
        model_id="scripted-1",
        label="daisy",
        confidence=0.9,
        data=png_bytes((48, 48), colour),
        extension="png",
        author_id=(author or sender).id,
    )
    record = await scope.answer(answer_id)
    assert record is not None
    await scope.enqueue_review(record, label, user_id=sender.id, user_name=sender.name)
    return (await scope.review_items(100))[-1].item_id
