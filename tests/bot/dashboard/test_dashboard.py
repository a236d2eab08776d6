"""The dashboard over real HTTP, served by the real bot's process: login through the
simulator's OAuth2, sessions, CSRF, who sees which server, security headers, metrics;
hostile requests included."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from bot.core.member_access import ServerRole
from bot.dashboard.sessions import SESSION_COOKIE, CookieCodec
from tests.bot.dashboard_world import (
    DashboardWorld,
    csrf_token_of,
    http_client,
    log_in,
    running_world,
)
from tests.bot.tenancy_world import poll


async def server_names(dash: DashboardWorld, http: aiohttp.ClientSession) -> set[str]:
    async with http.get(dash.url + "/servers", allow_redirects=False) as resp:
        assert resp.status == 200
        page = await resp.text()
    return set(re.findall(r'<a href="/servers/\d+">([^<]+)</a>', page))


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp


# --- who sees what ----------
async def test_an_admin_sees_exactly_the_servers_where_they_are_admin_and_the_bot_is(dash, http):
    await log_in(dash, http, dash.alice)
    # Echo too (the bot is there, nothing stored yet); not Delta (the bot left), Foxtrot
    assert await server_names(dash, http) == {"Alpha", "Bravo", "Echo"}


async def test_a_trainer_sees_the_server_of_their_role(dash, http):
    await log_in(dash, http, dash.bob)
    assert await server_names(dash, http) == {"Charlie"}
    status, page, _ = await get(http, dash.guild_url("Charlie"))
    assert status == 200 and "You are a <strong>trainer</strong> here." in page


async def test_a_member_without_the_role_sees_nothing_and_cannot_open_it(dash, http):
    await log_in(dash, http, dash.carol)
    assert await server_names(dash, http) == set()
    for name in ("Charlie", "Alpha"):
        status, page, _ = await get(http, dash.guild_url(name))
        assert status == 404 and "No such server for you." in page


async def test_another_servers_id_in_a_url_is_not_found(dash, http):
    await log_in(dash, http, dash.alice)
    assert (await get(http, dash.guild_url("Alpha")))[0] == 200
    for name in ("Charlie", "Delta", "Foxtrot"):
        status, page, _ = await get(http, dash.guild_url(name))
        assert status == 404, name
        assert dash.guilds[name].name not in page  # not even its name
    for path in ("/servers/12345", "/servers/0", "/servers/99999999999999999999"):
        assert (await get(http, dash.url + path))[0] == 404
    assert (await get(http, dash.url + "/servers/abc"))[0] == 404


async def test_a_server_page_shows_that_servers_data_only(dash, http):
    alpha, bravo = dash.guilds["Alpha"], dash.guilds["Bravo"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    await dash.store.guild(alpha.id).add_taught("tulip", png, "png", user_id=1, user_name="x")
    await dash.store.guild(bravo.id).add_taught("rose", png + b"1", "png", user_id=1, user_name="x")
    await log_in(dash, http, dash.alice)
    _, alpha_page, _ = await get(http, dash.guild_url("Alpha"))
    _, bravo_page, _ = await get(http, dash.guild_url("Bravo"))
    assert "<td>tulip</td>" in alpha_page and "rose" not in alpha_page
    assert "<td>rose</td>" in bravo_page and "tulip" not in bravo_page


async def test_losing_the_trainer_role_closes_the_server(dash, http):
    await log_in(dash, http, dash.bob)
    assert (await get(http, dash.guild_url("Charlie")))[0] == 200
    dash.sim.give_role(dash.guilds["Charlie"], dash.bob, dash.trainer_role, on=False)
    assert (await get(http, dash.guild_url("Charlie")))[0] == 404  # checked again each page
    assert await server_names(dash, http) == set()


async def test_a_server_the_bot_leaves_disappears(dash, http):
    await log_in(dash, http, dash.alice)
    assert (await get(http, dash.guild_url("Alpha")))[0] == 200
    alpha = dash.guilds["Alpha"]
    await dash.sim.remove_bot(dash.app, alpha)  # GUILD_DELETE
    await poll(lambda: dash.bot.get_guild(alpha.id) is None)
    assert (await get(http, dash.guild_url("Alpha")))[0] == 404
    assert await server_names(dash, http) == {"Bravo", "Echo"}


async def test_operators_are_admins_where_they_are_members(tmp_path, http):
    async with running_world(tmp_path, operators=("carol",)) as dash:
        await log_in(dash, http, dash.carol)
        assert await server_names(dash, http) == {"Alpha", "Charlie"}


async def test_a_trainer_is_refused_admin_only_checks(dash, http):
    await log_in(dash, http, dash.bob)
    checker = dash.dashboard[dash.key("CHECKER")]
    session = _session_of(dash, http)
    access = await checker.require(session, dash.guilds["Charlie"].id)
    assert access.role.value == ServerRole.TRAINER.value
    with pytest.raises(web.HTTPForbidden):
        await checker.require(session, dash.guilds["Charlie"].id, admin=True)


def _session_of(dash: DashboardWorld, http: aiohttp.ClientSession):
    from aiohttp.test_utils import make_mocked_request

    cookie = next(c for c in http.cookie_jar if c.key == SESSION_COOKIE)

    request = make_mocked_request(
        "GET", "/", headers={"Cookie": f"{SESSION_COOKIE}={cookie.value}"}
    )
    return dash.dashboard[dash.key("COOKIES")].read(request)


# --- login ----------
async def test_login_asks_discord_for_identify_and_guilds_with_a_state(dash, http):
    status, _, resp = await get(http, dash.url + "/login")
    assert status == 302
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/api/oauth2/authorize"  # the spec's authorizationUrl
    query = parse_qs(location.query)
    assert query["scope"] == ["identify guilds"] and query["response_type"] == ["code"]
    assert query["client_id"] == [str(dash.app.id)]
    assert query["redirect_uri"] == [dash.url + "/callback"]
    assert len(query["state"][0]) >= 32
    cookie = resp.cookies["dashboard_login"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


async def test_a_state_mismatch_is_refused_and_logs_nobody_in(dash, http):
    await get(http, dash.url + "/login")  # our state cookie
    dash.sim.oauth2.consenting_user = dash.alice
    query = (
        f"?client_id={dash.app.id}&response_type=code&scope=identify+guilds"
        f"&redirect_uri={dash.url}/callback&state=the-attackers-state"
    )
    _, _, resp = await get(
        http, dash.sim.api_base.replace("/v10", "") + "/oauth2/authorize" + query
    )
    status, page, resp = await get(http, resp.headers["Location"])
    assert status == 400 and "could not be verified" in page
    assert SESSION_COOKIE not in resp.cookies
    assert (await get(http, dash.url + "/servers"))[0] == 302  # still logged out
    assert not dash.sim.oauth2.tokens  # the code was never exchanged


async def test_a_callback_without_our_login_cookie_is_refused(dash, http):
    """Login CSRF: an attacker's code and state, sent to a victim who never clicked Log in."""
    async with http_client() as attacker:
        await get(attacker, dash.url + "/login")
        dash.sim.oauth2.consenting_user = dash.carol
        _, _, resp = await get(attacker, (await _authorize_url(dash, attacker)))
        callback = resp.headers["Location"]
    status, page, _ = await get(http, callback)
    assert status == 400 and "could not be verified" in page


async def _authorize_url(dash: DashboardWorld, http: aiohttp.ClientSession) -> str:
    _, _, resp = await get(http, dash.url + "/login")
    return resp.headers["Location"]


async def test_a_cancelled_login_says_so(dash, http):
    _, _, resp = await get(http, dash.url + "/login")
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    status, page, _ = await get(http, f"{dash.url}/callback?error=access_denied&state={state}")
    assert status == 400 and "cancelled" in page


async def test_a_login_discord_refuses_is_a_clear_page(dash, http):
    _, _, resp = await get(http, dash.url + "/login")
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    status, page, _ = await get(http, f"{dash.url}/callback?code=forged&state={state}")
    assert status == 400 and "Discord refused this login" in page
    assert dash.sim.oauth2.token_errors == [("invalid_grant", 'Invalid "code" in request.')]


async def test_the_secrets_are_never_logged(dash, http, caplog):
    caplog.set_level(logging.DEBUG)
    await log_in(dash, http, dash.alice)
    await server_names(dash, http)
    token = next(iter(dash.sim.oauth2.tokens))
    for secret in (dash.app.client_secret, dash.config.session_secret, token, dash.app.token):
        assert secret not in caplog.text
        assert secret not in repr(dash.config)


# --- sessions ----------
async def test_the_session_cookie_is_httponly_lax_and_encrypted(dash, http):
    await log_in(dash, http, dash.alice)
    cookie = next(c for c in http.cookie_jar if c.key == SESSION_COOKIE)
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert 0 < int(cookie["max-age"]) <= 12 * 3600
    token = next(iter(dash.sim.oauth2.tokens))
    assert token not in cookie.value and "alice" not in cookie.value


@pytest.mark.parametrize(
    "forge",
    [
        lambda dash, value: "garbage",
        lambda dash, value: value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"),
        lambda dash, value: CookieCodec("another-secret-of-enough-length-000000", "session").dumps(
            {"uid": str(dash.alice.id), "name": "alice", "token": "t", "csrf": "c", "exp": 2e9}
        ),
        lambda dash, value: CookieCodec(dash.config.session_secret, "login").dumps(
            {"uid": str(dash.alice.id), "name": "alice", "token": "t", "csrf": "c", "exp": 2e9}
        ),
    ],
    ids=["garbage", "tampered", "other-secret", "login-cookie-as-session"],
)
async def test_a_forged_session_cookie_is_refused(dash, http, forge):
    await log_in(dash, http, dash.alice)
    real = next(c for c in http.cookie_jar if c.key == SESSION_COOKIE).value
    async with http_client() as other:
        other.cookie_jar.update_cookies(
            {SESSION_COOKIE: forge(dash, real)}, response_url=_url(dash)
        )
        status, _, resp = await get(other, dash.url + "/servers")
        assert status == 302 and resp.headers["Location"] == "/"
        status, _, _ = await get(other, dash.guild_url("Alpha"))
        assert status == 302


def _url(dash: DashboardWorld):
    from yarl import URL

    return URL(dash.url)


async def test_an_expired_session_cookie_is_refused(dash, http):
    codec = CookieCodec(dash.config.session_secret, "session")
    token = dash.sim.oauth2.grant(dash.app, dash.alice).access_token
    data = {"uid": str(dash.alice.id), "name": "alice", "token": token, "csrf": "c"}
    too_old = codec.dumps({**data, "exp": time.time() + 3600}, at=time.time() - 13 * 3600)
    past_exp = codec.dumps({**data, "exp": time.time() - 1})
    fresh = codec.dumps({**data, "exp": time.time() + 3600})
    for value, status in ((too_old, 302), (past_exp, 302), (fresh, 200)):
        async with http_client() as client:
            client.cookie_jar.update_cookies({SESSION_COOKIE: value}, response_url=_url(dash))
            assert (await get(client, dash.url + "/servers"))[0] == status


async def test_a_token_discord_no_longer_accepts_ends_the_session(dash, http):
    await log_in(dash, http, dash.alice)
    for token in dash.sim.oauth2.tokens.values():
        token.revoked = True
    status, page, resp = await get(http, dash.url + "/servers")
    assert status == 401 and "expired" in page and "Log in with Discord" in page
    assert resp.cookies[SESSION_COOKIE].value == ""  # cleared


# --- CSRF and logout ----------
async def _logout(dash, http, *, token=None, headers=None):
    data = {} if token is None else {"csrf_token": token}
    async with http.post(
        dash.url + "/logout", data=data, headers=headers or {}, allow_redirects=False
    ) as resp:
        return resp.status, await resp.text()


async def test_logout_with_the_token_ends_the_session(dash, http):
    await log_in(dash, http, dash.alice)
    _, page, _ = await get(http, dash.url + "/servers")
    status, _ = await _logout(dash, http, token=csrf_token_of(page), headers={"Origin": dash.url})
    assert status == 302
    assert (await get(http, dash.url + "/servers"))[0] == 302


@pytest.mark.parametrize(
    ("token", "headers", "why"),
    [
        (None, {"Origin": "SELF"}, "did not come from the dashboard"),
        ("wrong", {"Origin": "SELF"}, "did not come from the dashboard"),
        ("RIGHT", {"Origin": "http://evil.example"}, "own pages"),
        ("RIGHT", {"Origin": "null", "Sec-Fetch-Site": "cross-site"}, "own pages"),
        ("RIGHT", {}, "own pages"),  # neither Origin nor Sec-Fetch-Site
    ],
    ids=["no-token", "wrong-token", "foreign-origin", "null-origin-cross-site", "no-origin"],
)
async def test_a_state_change_without_csrf_proof_is_refused(dash, http, token, headers, why):
    await log_in(dash, http, dash.alice)
    _, page, _ = await get(http, dash.url + "/servers")
    real = csrf_token_of(page)
    headers = {k: (dash.url if v == "SELF" else v) for k, v in headers.items()}
    status, body = await _logout(
        dash, http, token=real if token == "RIGHT" else token, headers=headers
    )
    assert status == 403 and why in body
    assert (await get(http, dash.url + "/servers"))[0] == 200  # still logged in


async def test_same_origin_forms_with_a_null_origin_pass_on_fetch_metadata(dash, http):
    """What Chromium sends under Referrer-Policy: no-referrer (see security.py)."""
    await log_in(dash, http, dash.alice)
    _, page, _ = await get(http, dash.url + "/servers")
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert (await _logout(dash, http, token=csrf_token_of(page), headers=headers))[0] == 302


async def test_every_state_changing_route_is_protected(dash, http):
    """The CSRF check is the app's, not each handler's: a route added later is covered."""
    await log_in(dash, http, dash.alice)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with http.request(
            method, dash.url + "/servers", headers={"Origin": dash.url}
        ) as resp:
            assert resp.status == 403, method


async def test_a_posted_session_from_another_member_does_not_pass(dash, http):
    await log_in(dash, http, dash.alice)
    async with http_client() as bob:
        await log_in(dash, bob, dash.bob)
        _, bob_page, _ = await get(bob, dash.url + "/servers")
    status, _ = await _logout(
        dash, http, token=csrf_token_of(bob_page), headers={"Origin": dash.url}
    )
    assert status == 403


# --- headers, metrics, mounting ----------
async def test_every_answer_carries_the_security_headers(dash, http):
    await log_in(dash, http, dash.alice)
    for path in (
        "/",
        "/servers",
        f"/servers/{dash.guilds['Foxtrot'].id}",
        "/nope",
        "/static/dashboard.css",
    ):
        _, _, resp = await get(http, dash.url + path)
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"].startswith("public")  # the stylesheet
    _, _, resp = await get(http, dash.url + "/servers")
    assert resp.headers["Cache-Control"] == "no-store"


async def test_pages_escape_what_discord_sends(dash, http):
    dash.guilds["Alpha"].name = "<script>alert(1)</script>"
    await log_in(dash, http, dash.alice)
    _, page, _ = await get(http, dash.url + "/servers")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


async def test_request_metrics_use_route_templates(dash, http):
    """On the bot's own registry: the bot's /metrics carries them."""
    registry = dash.bot.metrics.registry
    await log_in(dash, http, dash.alice)
    await get(http, dash.guild_url("Alpha"))
    await get(http, dash.guild_url("Foxtrot"))
    await get(http, dash.url + "/no/such/page")

    def count(**labels: str) -> float | None:
        return registry.get_sample_value("classifier_bot_dashboard_requests_total", labels)

    assert count(route="/servers/{guild_id}", method="GET", status="200") == 1
    assert count(route="/servers/{guild_id}", method="GET", status="404") == 1
    assert count(route="/callback", method="GET", status="302") == 1
    assert count(route="unmatched", method="GET", status="404") == 1
    assert (
        registry.get_sample_value("classifier_bot_dashboard_logins_total", {"outcome": "ok"}) == 1
    )


async def test_served_under_the_path_of_its_public_url(tmp_path, http):
    async with running_world(tmp_path, path="/dashboard") as dash:
        root = dash.url.removesuffix("/dashboard")
        assert (await get(http, root + "/servers"))[0] == 404  # only under its path
        await log_in(dash, http, dash.alice)
        async with http.get(dash.url + "/servers") as resp:
            page = await resp.text()
        names = set(re.findall(r'<a href="/dashboard/servers/\d+">([^<]+)</a>', page))
        assert names == {"Alpha", "Bravo", "Echo"}
        cookie = next(c for c in http.cookie_jar if c.key == SESSION_COOKIE)
        assert cookie["path"] == "/dashboard"


# --- settings -------------------------------------------------------------------------------
def test_the_config_comes_from_the_settings_and_names_discords_oauth2_urls():
    from pydantic import ValidationError

    from bot.core.settings import Settings
    from bot.dashboard import DashboardConfig

    settings = Settings(
        discord_token="t.o.k",
        dashboard_public_url="https://bot.example/dashboard/",
        discord_client_id=42,
        discord_client_secret="a-client-secret",
        dashboard_session_secret="s" * 32,
        admin_user_ids="7, 8",
    )
    config = DashboardConfig.from_settings(settings)
    assert config.public_url == "https://bot.example/dashboard"
    assert config.redirect_uri == "https://bot.example/dashboard/callback"
    # the spec's securitySchemes: https://discord.com/api/oauth2/{authorize,token}
    assert config.authorize_url == "https://discord.com/api/oauth2/authorize"
    assert config.token_url == "https://discord.com/api/oauth2/token"
    assert config.origin == "https://bot.example" and config.base_path == "/dashboard"
    assert config.secure and config.operator_ids == {7, 8}
    assert "a-client-secret" not in repr(config) and "t.o.k" not in repr(config)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(**{**settings.model_dump(), "dashboard_session_secret": "short"})
    with pytest.raises(ValidationError, match="DISCORD_CLIENT_SECRET"):
        Settings(discord_token="t", dashboard_public_url="https://x.example", discord_client_id=1)
    # the container's HTTP_PORT is 8080: the dashboard's default is another port, and the
    # same port for both listeners is refused at start, not found out as a bind failure
    beside_ops = Settings(**{**settings.model_dump(), "http_port": 8080})
    assert (beside_ops.http_port, beside_ops.dashboard_port) == (8080, 8081)
    with pytest.raises(ValidationError, match="DASHBOARD_PORT and HTTP_PORT are both 8080"):
        Settings(**{**settings.model_dump(), "http_port": 8080, "dashboard_port": 8080})
    with pytest.raises(ValidationError, match="without query"):
        Settings(discord_token="t", dashboard_public_url="https://x.example/?a=1")


# --- in the bot's process ----------------------------------------------------------------------
async def test_a_dashboard_port_in_use_stops_the_bot_with_exit_code_2(tmp_path):
    from bot.__main__ import exit_code_for
    from bot.core.health import ListenerFailed
    from tests.bot.dashboard_world import free_socket, start_world
    from tests.discord_sim import DiscordSimulator

    blocker = free_socket()
    blocker.listen()
    port = blocker.getsockname()[1]
    sim = DiscordSimulator()
    await sim.start()
    try:
        with pytest.raises(ListenerFailed, match=f"DASHBOARD_PORT={port} cannot be bound") as info:
            await start_world(tmp_path, env={"DASHBOARD_PORT": str(port)}, sim=sim)
        assert exit_code_for(info.value) == 2
        assert "unset DASHBOARD_PUBLIC_URL" in str(info.value)
    finally:
        blocker.close()
        await sim.stop()
