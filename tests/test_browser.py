"""The browser fixture drives the real Chromium against a real aiohttp server."""

from __future__ import annotations

import html
import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page

from tests.browser import chromium_path

FORM = """<!doctype html><html><head><meta charset="utf-8"><title>Greeter</title>
<script src="/app.js" defer></script></head><body>
<form method="post" action="/greet"><label for="who">Name</label>
<input id="who" name="who"><button>Greet</button></form>
<p id="typed"></p></body></html>"""
SCRIPT = """document.getElementById('who').addEventListener('input', (e) => {
  document.getElementById('typed').textContent = 'typing: ' + e.target.value;
});"""


@pytest_asyncio.fixture
async def site() -> AsyncIterator[str]:
    posted: list[str] = []

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=FORM, content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=SCRIPT, content_type="text/javascript")

    async def greet(request: web.Request) -> web.Response:
        who = str((await request.post())["who"])
        posted.append(who)
        body = f"<!doctype html><title>Hi</title><h1>Hello, {html.escape(who)}!</h1>"
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/", form), web.get("/app.js", script), web.post("/greet", greet)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_chromium_fills_a_form_runs_the_pages_script_and_posts(browser_page: Page, site):
    page = browser_page
    await page.goto(site + "/")
    await page.get_by_label("Name").fill("<Ada>")
    assert await page.locator("#typed").text_content() == "typing: <Ada>"  # the page's JS ran
    await page.get_by_role("button", name="Greet").click()
    await page.wait_for_url(site + "/greet")
    assert await page.locator("h1").text_content() == "Hello, <Ada>!"  # escaped, shown as text
    agent = await page.evaluate("navigator.userAgent")
    assert "HeadlessChrome" in agent or "Chrome" in agent


def test_the_browser_is_debians_chromium():
    version = subprocess.run(
        [str(chromium_path()), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("Chromium ")


def test_a_missing_browser_fails_the_test_with_the_install_command(monkeypatch):
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match=r"bash \.ci/chromium\.sh"):
        chromium_path()
