"""The dashboard end to end in the real Chromium: served by the real bot's process, logging
in through the Discord simulator's OAuth2 consent page, on a real SQLite database."""

from __future__ import annotations

from aiohttp import web
from playwright.async_api import Page

from bot.dashboard.sessions import SESSION_COOKIE
from tests.bot.dashboard_world import DashboardWorld, free_socket, serve


async def server_names(page: Page) -> set[str]:
    return set(await page.locator(".cards a").all_text_contents())


async def log_in_by_consent_page(page: Page, dash: DashboardWorld, who: str) -> None:
    await page.goto(dash.url + "/")
    await page.get_by_role("link", name="Log in with Discord").click()
    await page.get_by_role("button", name=f"Authorize as {who}").click()  # the simulator's page
    await page.wait_for_url(dash.url + "/servers")


async def test_login_see_exactly_the_right_servers_and_log_out(browser_page: Page, dash):
    page = browser_page
    await log_in_by_consent_page(page, dash, "alice")
    assert await page.get_by_text("Logged in as alice").is_visible()
    assert await server_names(page) == {"Alpha", "Bravo", "Echo"}
    badges = await page.locator(".card .badge").all_text_contents()
    assert badges == ["Administrator"] * 3

    cookie = next(c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""  # not readable by scripts

    await page.get_by_role("link", name="Alpha").click()
    await page.wait_for_url(dash.guild_url("Alpha"))
    assert await page.get_by_role("heading", level=1).text_content() == "Alpha"

    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(dash.url + "/")
    assert await page.get_by_role("link", name="Log in with Discord").is_visible()
    await page.goto(dash.url + "/servers")
    await page.wait_for_url(dash.url + "/")  # logged out: back to the start
    assert not [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]


async def test_a_trainer_by_keyboard_alone_on_a_phone_sized_screen(browser_page: Page, dash):
    page = browser_page
    await page.set_viewport_size({"width": 375, "height": 667})
    dash.sim.oauth2.consenting_user = dash.bob  # Discord remembers bob's consent
    await page.goto(dash.url + "/")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Log in with Discord"
    await page.keyboard.press("Enter")
    await page.wait_for_url(dash.url + "/servers")
    assert await server_names(page) == {"Charlie"}
    assert await page.locator(".card .badge").all_text_contents() == ["Trainer"]

    fits = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the page scrolls sideways on a phone"
    box = await page.get_by_role("button", name="Log out").bounding_box()
    assert box is not None and box["height"] >= 44  # a touch target

    await page.keyboard.press("Tab")  # the skip link, then into the content
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Charlie"
    await page.keyboard.press("Enter")
    await page.wait_for_url(dash.guild_url("Charlie"))
    assert "trainer" in (await page.locator("main p").first.text_content() or "")


async def test_a_member_without_the_role_sees_no_server_and_cannot_open_one(
    browser_page: Page, dash
):
    page = browser_page
    await log_in_by_consent_page(page, dash, "carol")
    assert await server_names(page) == set()
    assert await page.get_by_text("None yet.").is_visible()
    response = await page.goto(dash.guild_url("Charlie"))
    assert response is not None and response.status == 404
    assert await page.get_by_role("alert").text_content() == "No such server for you."


async def test_another_servers_id_in_the_address_bar(browser_page: Page, dash):
    page = browser_page
    await log_in_by_consent_page(page, dash, "alice")
    for name in ("Charlie", "Delta", "Foxtrot"):
        response = await page.goto(dash.guild_url(name))
        assert response is not None and response.status == 404, name
        assert name not in await page.content()


async def test_a_forged_cookie_is_a_logged_out_visitor(browser_page: Page, dash):
    page = browser_page
    await page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": "gAAAAABforged", "url": dash.url}]
    )
    await page.goto(dash.url + "/servers")
    await page.wait_for_url(dash.url + "/")
    assert await page.get_by_role("link", name="Log in with Discord").is_visible()


async def test_two_logins_at_once_the_older_one_fails_its_state_check(browser_page: Page, dash):
    page = browser_page
    await page.goto(dash.url + "/login")  # the consent page, with state 1
    second = await page.context.new_page()
    await second.goto(dash.url + "/login")  # state 2 replaces state 1 in the cookie
    await page.get_by_role("button", name="Authorize as alice").click()
    await page.wait_for_url(f"{dash.url}/callback?**")
    assert await page.get_by_role("alert").text_content() == (
        "This login could not be verified (it did not start here, or it took too long). "
        "Please log in again."
    )
    assert not [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    await second.get_by_role("button", name="Authorize as alice").click()
    await second.wait_for_url(dash.url + "/servers")  # the newer one works


ATTACKER_FORM = """<!doctype html><title>Win a prize</title>
<form id="f" method="post" action="{target}/logout"></form>
<script>document.getElementById('f').submit();</script>"""
ATTACKER_FRAME = """<!doctype html><title>Win a prize</title>
<iframe id="framed" src="{target}/servers"></iframe>"""


async def test_another_sites_form_cannot_act_and_the_dashboard_cannot_be_framed(
    browser_page: Page, dash
):
    page = browser_page
    await log_in_by_consent_page(page, dash, "alice")

    def attacker(html: str) -> web.RequestHandler:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=html.format(target=dash.url), content_type="text/html")

        return handler

    evil = web.Application()
    evil.add_routes(
        [web.get("/", attacker(ATTACKER_FORM)), web.get("/frame", attacker(ATTACKER_FRAME))]
    )
    sock = free_socket()
    async with serve(evil, sock):
        async with page.expect_response(dash.url + "/logout") as posted:
            await page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        refused = await posted.value
        assert refused.status == 403
        assert "own pages" in await page.content()
    await page.goto(dash.url + "/servers")
    assert await server_names(page) == {"Alpha", "Bravo", "Echo"}  # still logged in

    async with serve(evil, sock2 := free_socket()):
        await page.goto(f"http://127.0.0.1:{sock2.getsockname()[1]}/frame")  # waits for it
        framed = page.frame_locator("#framed")
        assert await framed.locator(".cards").count() == 0  # CSP frame-ancestors 'none'
