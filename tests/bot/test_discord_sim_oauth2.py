"""The simulator's OAuth2 flow (authorize, token, bearer routes) against Discord's spec,
driven with raw HTTP as a web application would, hostile cases included."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio

from tests.discord_sim import ADMINISTRATOR, MANAGE_GUILD, DiscordSimulator
from tests.discord_sim.model import Application, Guild, User
from tests.discord_sim.openapi import load_spec

REDIRECT = "http://127.0.0.1:9/callback"


@dataclass
class OAuthWorld:
    sim: DiscordSimulator
    app: Application
    alice: User
    bob: User
    guilds: list[Guild]
    http: aiohttp.ClientSession

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.sim.port}"

    def authorize_url(self, **params: str) -> str:
        query = {
            "client_id": str(self.app.id),
            "response_type": "code",
            "scope": "identify guilds",
            "redirect_uri": REDIRECT,
            "state": "s-123",
            **params,
        }
        return (
            self.root
            + load_spec().authorize_path
            + "?"
            + "&".join(f"{k}={aiohttp.helpers.quote(v, safe='')}" for k, v in query.items())
        )

    async def consent(self, user: User, **params: str) -> dict[str, list[str]]:
        """Open the consent page, press "Authorize as <user>"; the redirect's query."""
        async with self.http.get(self.authorize_url(**params)) as page:
            assert page.status == 200, await page.text()
            assert f"Authorize as {user.name}" in await page.text()
        async with self.http.post(
            self.authorize_url(**params), data={"user_id": str(user.id)}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
            location = resp.headers["Location"]
        assert location.startswith(REDIRECT + "?")
        return parse_qs(urlsplit(location).query)

    async def exchange(self, code: str, **form: str) -> tuple[int, dict]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": str(self.app.id),
            "client_secret": self.app.client_secret,
            **form,
        }
        data = {k: v for k, v in data.items() if v is not None}
        async with self.http.post(self.root + load_spec().token_path, data=data) as resp:
            return resp.status, await resp.json()

    async def api(self, path: str, token: str, scheme: str = "Bearer") -> tuple[int, object]:
        headers = {"Authorization": f"{scheme} {token}"}
        async with self.http.get(self.sim.api_base + path, headers=headers) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()


@pytest_asyncio.fixture
async def oauth() -> AsyncIterator[OAuthWorld]:
    sim = DiscordSimulator()
    await sim.start()
    app = sim.create_application("Classifier")
    app.redirect_uris.append(REDIRECT)
    alice, bob = sim.create_user("alice"), sim.create_user("bob")
    owned = sim.create_guild("alice's", alice)
    admin = sim.create_guild("admin here", bob)
    sim.add_member(admin, alice, ADMINISTRATOR)
    plain = sim.create_guild("plain member", bob)
    sim.add_member(plain, alice, MANAGE_GUILD)
    sim.create_guild("not hers", bob)
    async with aiohttp.ClientSession() as http:
        yield OAuthWorld(sim, app, alice, bob, [owned, admin, plain], http)
    await sim.stop()


async def test_authorization_code_flow_end_to_end(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    assert query["state"] == ["s-123"]
    status, token = await oauth.exchange(query["code"][0])
    assert status == 200, token
    assert token["token_type"] == "Bearer" and token["expires_in"] == 604_800
    assert set(token["scope"].split()) == {"identify", "guilds"}
    assert token["access_token"] and token["refresh_token"]

    status, me = await oauth.api("/users/@me", token["access_token"])
    assert status == 200 and me["id"] == str(oauth.alice.id) and me["username"] == "alice"
    assert "email" not in me  # no email scope
    status, guilds = await oauth.api("/users/@me/guilds", token["access_token"])
    assert status == 200
    by_name = {g["name"]: g for g in guilds}
    assert set(by_name) == {"alice's", "admin here", "plain member"}
    assert by_name["alice's"]["owner"] is True and by_name["admin here"]["owner"] is False
    assert int(by_name["admin here"]["permissions"]) & ADMINISTRATOR
    plain = int(by_name["plain member"]["permissions"])
    assert plain & MANAGE_GUILD and not plain & ADMINISTRATOR
    assert all(isinstance(g["permissions"], str) for g in guilds)  # a string, per the spec
    assert not oauth.sim.response_violations


async def test_the_guild_list_pages_by_after_and_limit(oauth: OAuthWorld):
    token = oauth.sim.oauth2.grant(oauth.app, oauth.alice).access_token
    status, first = await oauth.api("/users/@me/guilds?limit=2", token)
    assert status == 200 and len(first) == 2
    status, rest = await oauth.api(f"/users/@me/guilds?after={first[-1]['id']}", token)
    assert [g["id"] for g in first + rest] == sorted(str(g.id) for g in oauth.guilds)
    oauth.sim.expect_spec_violations = True
    status, _ = await oauth.api("/users/@me/guilds?limit=500", token)
    assert status == 400  # the spec's maximum is 200


async def test_automatic_consent_for_a_configured_user(oauth: OAuthWorld):
    oauth.sim.oauth2.consenting_user = oauth.bob
    async with oauth.http.get(oauth.authorize_url(), allow_redirects=False) as resp:
        assert resp.status == 302
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
    _, token = await oauth.exchange(query["code"][0])
    _, me = await oauth.api("/users/@me", token["access_token"])
    assert me["id"] == str(oauth.bob.id)


async def test_the_website_consent_page_works_too(oauth: OAuthWorld):
    url = oauth.authorize_url().replace(load_spec().authorize_path, "/oauth2/authorize")
    async with oauth.http.get(url) as page:
        assert page.status == 200 and "Authorize as alice" in await page.text()


async def test_basic_client_authentication(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    auth = aiohttp.BasicAuth(str(oauth.app.id), oauth.app.client_secret)
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT}
    url = oauth.root + load_spec().token_path
    async with oauth.http.post(url, data=form, auth=auth) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert (await resp.json())["token_type"] == "Bearer"


async def test_refresh_token_gives_a_new_token_and_retires_the_old(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    _, first = await oauth.exchange(query["code"][0])
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": str(oauth.app.id),
        "client_secret": oauth.app.client_secret,
    }
    url = oauth.root + load_spec().token_path
    async with oauth.http.post(url, data=form) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert (await oauth.api("/users/@me", second["access_token"]))[0] == 200
    assert (await oauth.api("/users/@me", first["access_token"]))[0] == 401
    async with oauth.http.post(url, data=form) as resp:  # a refresh token works once
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"


# --- hostile ---------------------------------------------------------------------------------
async def test_wrong_secret_is_invalid_client(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    status, body = await oauth.exchange(query["code"][0], client_secret="not-the-secret")
    assert status == 401 and body["error"] == "invalid_client"
    status, body = await oauth.exchange(query["code"][0], client_id="1234")
    assert status == 401 and body["error"] == "invalid_client"
    status, _ = await oauth.exchange(query["code"][0])  # the code was not spent by those
    assert status == 200


async def test_a_reused_code_is_refused_and_revokes_its_token(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    status, token = await oauth.exchange(query["code"][0])
    assert status == 200
    status, body = await oauth.exchange(query["code"][0])
    assert status == 400 and body == {
        "error": "invalid_grant",
        "error_description": 'Invalid "code" in request.',
    }
    status, _ = await oauth.api("/users/@me", token["access_token"])
    assert status == 401  # RFC 6749 4.1.2: what a replayed code gave is revoked


async def test_an_expired_code_is_refused(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    oauth.sim.oauth2.codes[query["code"][0]].expires_at = time.monotonic() - 1
    status, body = await oauth.exchange(query["code"][0])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_codes_live_ten_minutes(oauth: OAuthWorld):
    query = await oauth.consent(oauth.alice)
    left = oauth.sim.oauth2.codes[query["code"][0]].expires_at - time.monotonic()
    assert 590 < left <= 600


async def test_the_redirect_uri_must_match_the_authorization(oauth: OAuthWorld):
    oauth.app.redirect_uris.append("http://127.0.0.1:9/other")
    query = await oauth.consent(oauth.alice)
    status, body = await oauth.exchange(query["code"][0], redirect_uri="http://127.0.0.1:9/other")
    assert status == 400 and body["error_description"] == 'Invalid "redirect_uri" in request.'
    status, body = await oauth.exchange(query["code"][0], redirect_uri=None)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_another_applications_code_is_refused(oauth: OAuthWorld):
    other = oauth.sim.create_application("Other")
    query = await oauth.consent(oauth.alice)
    status, body = await oauth.exchange(
        query["code"][0], client_id=str(other.id), client_secret=other.client_secret
    )
    assert status == 400 and body["error"] == "invalid_grant"


async def test_token_requests_that_are_not_forms_or_use_two_authentications(oauth: OAuthWorld):
    url = oauth.root + load_spec().token_path
    async with oauth.http.post(url, json={"grant_type": "authorization_code"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    auth = aiohttp.BasicAuth(str(oauth.app.id), oauth.app.client_secret)
    form = {"grant_type": "authorization_code", "client_secret": oauth.app.client_secret}
    async with oauth.http.post(url, data=form, auth=auth) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    form = {"grant_type": "password", "client_id": str(oauth.app.id)}
    form["client_secret"] = oauth.app.client_secret
    async with oauth.http.post(url, data=form) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "unsupported_grant_type"


async def test_unknown_client_and_unregistered_redirect_are_never_redirected(oauth: OAuthWorld):
    for url in (
        oauth.authorize_url(client_id="999"),
        oauth.authorize_url(redirect_uri="http://evil.example/steal"),
        oauth.authorize_url(redirect_uri=REDIRECT + "/../elsewhere"),
    ):
        async with oauth.http.get(url, allow_redirects=False) as resp:
            assert resp.status == 400 and "Location" not in resp.headers


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"scope": "identify guilds teleport"}, "invalid_scope"),
        ({"scope": ""}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_bad_requests_are_redirected_with_an_error(oauth: OAuthWorld, params, error):
    async with oauth.http.get(oauth.authorize_url(**params), allow_redirects=False) as resp:
        assert resp.status == 302
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query == {"error": [error], "state": ["s-123"]}


async def test_cancel_on_the_consent_page_is_access_denied(oauth: OAuthWorld):
    async with oauth.http.post(
        oauth.authorize_url(), data={"deny": "1"}, allow_redirects=False
    ) as resp:
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query == {"error": ["access_denied"], "state": ["s-123"]}


async def test_an_expired_token_is_unauthorized(oauth: OAuthWorld):
    grant = oauth.sim.oauth2.grant(oauth.app, oauth.alice)
    assert (await oauth.api("/users/@me", grant.access_token))[0] == 200
    grant.expires_at = time.monotonic() - 1
    status, body = await oauth.api("/users/@me", grant.access_token)
    assert status == 401 and body == {"code": 0, "message": "401: Unauthorized"}


async def test_a_missing_scope_is_unauthorized(oauth: OAuthWorld):
    token = oauth.sim.oauth2.grant(oauth.app, oauth.alice, "identify").access_token
    assert (await oauth.api("/users/@me", token))[0] == 200
    assert (await oauth.api("/users/@me/guilds", token))[0] == 401
    token = oauth.sim.oauth2.grant(oauth.app, oauth.alice, "guilds").access_token
    assert (await oauth.api("/users/@me/guilds", token))[0] == 200
    assert (await oauth.api("/users/@me", token))[0] == 401


async def test_the_email_scope_adds_the_email(oauth: OAuthWorld):
    token = oauth.sim.oauth2.grant(oauth.app, oauth.alice, "identify email").access_token
    _, me = await oauth.api("/users/@me", token)
    assert me["email"] and me["verified"] is True


async def test_bearer_tokens_cannot_use_bot_routes(oauth: OAuthWorld):
    guild = oauth.guilds[0]
    token = oauth.sim.oauth2.grant(oauth.app, oauth.alice).access_token
    status, _ = await oauth.api(f"/guilds/{guild.id}/members/{oauth.alice.id}", token)
    assert status == 401
    status, _ = await oauth.api("/oauth2/applications/@me", token)
    assert status == 401
    assert (await oauth.api("/users/@me", "made-up-token"))[0] == 401


# --- a member as the bot sees it --------------------------------------------------------------
async def test_guild_member_over_rest_with_the_bot_token(oauth: OAuthWorld):
    sim, guild = oauth.sim, oauth.guilds[2]
    role = await sim.create_role(guild, "trainers")
    sim.give_role(guild, oauth.alice, role)
    status, member = await oauth.api(
        f"/guilds/{guild.id}/members/{oauth.alice.id}", oauth.app.token, "Bot"
    )
    assert status == 200
    assert str(role.id) in member["roles"] and member["user"]["id"] == str(oauth.alice.id)
    stranger = sim.create_user("stranger")
    status, body = await oauth.api(
        f"/guilds/{guild.id}/members/{stranger.id}", oauth.app.token, "Bot"
    )
    assert status == 404 and body["code"] == 10007
    status, body = await oauth.api(
        f"/guilds/12345/members/{oauth.alice.id}", oauth.app.token, "Bot"
    )
    assert status == 404 and body["code"] == 10004
    await sim.remove_bot(oauth.app, guild)
    status, body = await oauth.api(
        f"/guilds/{guild.id}/members/{oauth.alice.id}", oauth.app.token, "Bot"
    )
    assert status == 403 and body["code"] == 50001
    assert not sim.response_violations


async def test_an_answer_against_the_spec_fails_the_simulator(oauth: OAuthWorld):
    """The response check can fail: a member payload missing a required field."""
    sim = oauth.sim
    token = sim.oauth2.grant(oauth.app, oauth.alice).access_token
    original = User.me_payload

    def broken(self, *, email=False):
        data = original(self, email=email)
        del data["locale"]
        return data

    User.me_payload = broken  # type: ignore[method-assign]
    try:
        status, body = await oauth.api("/users/@me", token)
    finally:
        User.me_payload = original  # type: ignore[method-assign]
    assert status == 500 and "locale" in body["message"]
    assert sim.response_violations
    sim.response_violations.clear()  # stop() would fail on it
