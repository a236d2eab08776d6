"""Discord's OAuth2 authorization-code flow: the consent page, the token endpoint, and the
bearer tokens the REST routes accept.

Discord's OpenAPI spec names the flow in ``components.securitySchemes.OAuth2``: the URLs
``https://discord.com/api/oauth2/authorize`` and ``.../api/oauth2/token`` (served here at
those paths; the consent page also at the website's ``/oauth2/authorize``) and the scopes.
It gives no schema for the token endpoint's form or answer; those follow RFC 6749 (sections
4.1 and 6), as Discord's documentation does, and the answer is checked against
:data:`TOKEN_RESPONSE`. Which scope a REST route needs comes from the route's ``security``
in the spec (checked by :func:`bearer_grant`): a missing scope, an expired or revoked token
and a bearer token on a bot-only route are all ``401: Unauthorized``, as on Discord.

A test picks who consents on the page (a button per simulated user), or sets
``sim.oauth2.consenting_user`` for an automatic consent.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlencode

import jsonschema
from aiohttp import web

from tests.discord_sim.model import Application, User
from tests.discord_sim.openapi import load_spec
from tests.discord_sim.validation import DiscordError, json_response

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator

#: Discord's lifetimes: a code is good for 10 minutes, an access token for 7 days.
CODE_LIFETIME_S = 600.0
TOKEN_LIFETIME_S = 604_800.0
#: where the middleware keeps the bearer token that authorised a request
GRANT: web.RequestKey[AccessToken] = web.RequestKey("oauth2_grant")
#: RFC 6749 5.1 (Discord's documented answer); the spec has no schema for it
TOKEN_RESPONSE = {
    "type": "object",
    "properties": {
        "access_token": {"type": "string", "minLength": 1},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer", "minimum": 1},
        "refresh_token": {"type": "string", "minLength": 1},
        "scope": {"type": "string", "pattern": r"^\S+( \S+)*$"},
    },
    "required": ["access_token", "token_type", "expires_in", "refresh_token", "scope"],
    "additionalProperties": False,
}


class OAuth2Error(Exception):
    """An RFC 6749 error answer of the token endpoint: ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass
class AccessToken:
    access_token: str
    refresh_token: str
    app: Application
    user: User
    scopes: frozenset[str]
    expires_at: float  # time.monotonic()
    revoked: bool = False

    @property
    def valid(self) -> bool:
        return not self.revoked and time.monotonic() < self.expires_at


@dataclass
class AuthorizationCode:
    code: str
    app: Application
    user: User
    scopes: frozenset[str]
    redirect_uri: str
    expires_at: float
    used: bool = False
    issued: list[AccessToken] = field(default_factory=list)


def bearer_grant(sim: DiscordSimulator, request: web.Request, api_path: str) -> None:
    """With ``Authorization: Bearer <token>``: the token must be live and hold a scope the
    route's ``security`` lists, else 401 as Discord answers; kept in ``request[GRANT]``."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return
    token = sim.oauth2.tokens.get(header.removeprefix("Bearer "))
    op, _ = load_spec().match(request.method, api_path)
    if token is None or not token.valid or op is None or not op.oauth2_scopes & token.scopes:
        raise DiscordError(401, 0, "401: Unauthorized")
    request[GRANT] = token


class OAuth2Server:
    """The flow's state (codes, tokens) and its two endpoints."""

    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim
        self.code_lifetime_s = CODE_LIFETIME_S
        self.token_lifetime_s = TOKEN_LIFETIME_S
        #: set: the authorize page consents at once as this user (no page shown)
        self.consenting_user: User | None = None
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, AccessToken] = {}
        #: each refused token request: (error, description)
        self.token_errors: list[tuple[str, str]] = []

    def routes(self) -> list[web.RouteDef]:
        spec = load_spec()
        pages = ("/oauth2/authorize", spec.authorize_path)
        return [
            *(web.get(path, self.authorize) for path in pages),
            *(web.post(path, self.authorize) for path in pages),
            web.post(spec.token_path, self.token),
        ]

    # --- the consent page ----------------------------------------------------------------
    async def authorize(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        form = dict(await request.post()) if request.method == "POST" else {}
        client_id = params.get("client_id", "")
        app = next((a for a in self.sim.apps_by_token.values() if str(a.id) == client_id), None)
        if app is None:  # RFC 6749 4.1.2.1: never redirect for an unknown client
            return _page("Unknown Application", "No application has this client_id.", 400)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _page("Invalid OAuth2 redirect_uri", "It is not registered.", 400)
        state = params.get("state")
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, state, error="unsupported_response_type")
        scopes = params.get("scope", "").split()
        if not scopes or not set(scopes) <= load_spec().oauth2_scopes:
            return _redirect(redirect_uri, state, error="invalid_scope")
        if "deny" in form:
            return _redirect(redirect_uri, state, error="access_denied")
        user = self.consenting_user
        if "user_id" in form:
            chosen = str(form["user_id"])
            user = self.sim.users.get(int(chosen)) if chosen.isdigit() else None
            if user is None or user.bot:
                return _page("Unknown user", "Pick one of the users listed.", 400)
        if user is None:
            return self._consent_page(app, scopes)
        code = AuthorizationCode(
            secrets.token_urlsafe(24),
            app,
            user,
            frozenset(scopes),
            redirect_uri,
            time.monotonic() + self.code_lifetime_s,
        )
        self.codes[code.code] = code
        self.sim.notify()
        return _redirect(redirect_uri, state, code=code.code)

    def _consent_page(self, app: Application, scopes: list[str]) -> web.Response:
        users = [u for u in self.sim.users.values() if not u.bot]
        buttons = "".join(
            f'<button name="user_id" value="{u.id}">Authorize as {html.escape(u.name)}</button>'
            for u in users
        )
        body = (
            f"<p>{html.escape(app.user.name)} wants: {html.escape(' '.join(scopes))}</p>"
            f'<form method="post">{buttons}<button name="deny" value="1">Cancel</button></form>'
        )
        return _page("Authorize access to your account", body, 200, raw=True)

    # --- the token endpoint ----------------------------------------------------------------
    async def token(self, request: web.Request) -> web.Response:
        try:
            body = await self._token(request)
        except OAuth2Error as exc:
            self.token_errors.append((exc.error, exc.description))
            self.sim.notify()
            headers = {"WWW-Authenticate": 'Basic realm="discord"'} if exc.status == 401 else {}
            payload = {"error": exc.error, "error_description": exc.description}
            return json_response(payload, status=exc.status, headers=headers)
        jsonschema.validate(body, TOKEN_RESPONSE)  # the simulator's own answer
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _token(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/x-www-form-urlencoded":
            raise OAuth2Error(400, "invalid_request", "The body must be a URL-encoded form.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        app = self._client(request, form)
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            token = self._exchange_code(app, form)
        elif grant_type == "refresh_token":
            token = self._refresh(app, form)
        else:
            raise OAuth2Error(400, "unsupported_grant_type", f"Unsupported grant {grant_type!r}.")
        self.sim.notify()
        return {
            "access_token": token.access_token,
            "token_type": "Bearer",
            "expires_in": round(token.expires_at - time.monotonic()),
            "refresh_token": token.refresh_token,
            "scope": " ".join(sorted(token.scopes)),
        }

    def _client(self, request: web.Request, form: dict[str, str]) -> Application:
        """RFC 6749 2.3.1: HTTP Basic or ``client_id``/``client_secret`` in the form, not both."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            if "client_secret" in form:
                raise OAuth2Error(400, "invalid_request", "Two client authentications.")
            try:
                pair = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuth2Error(401, "invalid_client", "Malformed Basic credentials.") from None
            client_id, _, secret = pair.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)  # form-encoded
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        app = next((a for a in self.sim.apps_by_token.values() if str(a.id) == client_id), None)
        if app is None or not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
            raise OAuth2Error(401, "invalid_client", "Invalid client credentials.")
        return app

    def _exchange_code(self, app: Application, form: dict[str, str]) -> AccessToken:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.app is not app or time.monotonic() >= code.expires_at:
            raise OAuth2Error(400, "invalid_grant", 'Invalid "code" in request.')
        if code.used:  # RFC 6749 4.1.2: a replayed code revokes what it gave
            for token in code.issued:
                token.revoked = True
            raise OAuth2Error(400, "invalid_grant", 'Invalid "code" in request.')
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuth2Error(400, "invalid_grant", 'Invalid "redirect_uri" in request.')
        code.used = True
        token = self._issue(app, code.user, code.scopes)
        code.issued.append(token)
        return token

    def _refresh(self, app: Application, form: dict[str, str]) -> AccessToken:
        old = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if old is None or old.app is not app or old.revoked:
            raise OAuth2Error(400, "invalid_grant", 'Invalid "refresh_token" in request.')
        old.revoked = True
        return self._issue(app, old.user, old.scopes)

    def _issue(self, app: Application, user: User, scopes: frozenset[str]) -> AccessToken:
        token = AccessToken(
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            app,
            user,
            scopes,
            time.monotonic() + self.token_lifetime_s,
        )
        self.tokens[token.access_token] = token
        self.refresh_tokens[token.refresh_token] = token
        return token

    def grant(self, app: Application, user: User, scopes: str = "identify guilds") -> AccessToken:
        """A token as if ``user`` had consented and the code been exchanged (for tests of
        the bearer routes)."""
        return self._issue(app, user, frozenset(scopes.split()))


def _redirect(redirect_uri: str, state: str | None, **params: str) -> web.Response:
    if state is not None:
        params["state"] = state
    sep = "&" if "?" in redirect_uri else "?"
    return web.Response(status=302, headers={"Location": redirect_uri + sep + urlencode(params)})


def _page(title: str, body: str, status: int, *, raw: bool = False) -> web.Response:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    text = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{content}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html")
