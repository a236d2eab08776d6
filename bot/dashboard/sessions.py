"""Dashboard sessions, kept in the member's browser as encrypted and signed cookies.

A cookie is a Fernet token (``cryptography``: AES-128-CBC and HMAC-SHA256, with the time
it was made): nobody without ``DASHBOARD_SESSION_SECRET`` can read it (it holds the
member's Discord access token) or forge one, and one older than the session's lifetime is
refused whatever its ``Max-Age`` said. Each purpose (the session, the login in progress)
has its own key derived from the secret (HKDF), so one cookie cannot stand for the other.

Cookies are ``HttpOnly``, ``SameSite=Lax`` (the login comes back from Discord as a
top-level navigation, which ``Strict`` would strip), ``Secure`` when the dashboard is
served over https, and scoped to the dashboard's path.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.dashboard.config import DashboardConfig

SESSION_COOKIE = "dashboard_session"
LOGIN_COOKIE = "dashboard_login"
FLASH_COOKIE = "dashboard_flash"
FLASH_LIFETIME_S = 120.0  # from an action to the page it redirects to


@dataclass(frozen=True)
class Session:
    user_id: int
    name: str
    access_token: str = field(repr=False)  # the member's Discord token (scopes identify guilds)
    csrf_token: str = field(repr=False)
    expires_at: float  # Unix time: the session's lifetime or the token's, the sooner


class CookieCodec:
    """JSON in a Fernet token, under a key for one ``purpose``."""

    def __init__(self, secret: str, purpose: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=f"classifier-bot dashboard {purpose}".encode(),
        ).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def dumps(self, data: dict[str, Any], *, at: float | None = None) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        when = int(time.time() if at is None else at)
        return self._fernet.encrypt_at_time(raw, when).decode("ascii")

    def loads(self, token: str, max_age_s: float) -> dict[str, Any] | None:
        """The data, or ``None`` when forged, damaged, or older than ``max_age_s``."""
        try:
            raw = self._fernet.decrypt(token.encode("ascii"), ttl=max(1, int(max_age_s)))
            data = json.loads(raw)
        except (InvalidToken, UnicodeEncodeError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class SessionCookies:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.sessions = CookieCodec(config.session_secret, "session")
        self.logins = CookieCodec(config.session_secret, "login")
        self.flashes = CookieCodec(config.session_secret, "flash")

    def _set(self, response: web.StreamResponse, name: str, value: str, max_age: float) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(max_age),
            path=self.config.base_path or "/",
            secure=self.config.secure,
            httponly=True,
            samesite="Lax",
        )

    def _clear(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(
            name,
            path=self.config.base_path or "/",
            secure=self.config.secure,
            httponly=True,
            samesite="Lax",
        )

    # --- the session ----------------------------------------------------------------------
    def read(self, request: web.Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        data = self.sessions.loads(token, self.config.session_lifetime_s)
        if data is None:
            return None
        try:
            session = Session(
                int(data["uid"]),
                str(data["name"]),
                str(data["token"]),
                str(data["csrf"]),
                float(data["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > time.time() else None

    def start(
        self,
        response: web.StreamResponse,
        *,
        user_id: int,
        name: str,
        access_token: str,
        token_expires_in: float,
    ) -> Session:
        """A new session (new CSRF token) in a cookie on ``response``."""
        lifetime = min(self.config.session_lifetime_s, token_expires_in)
        session = Session(
            user_id, name, access_token, secrets.token_urlsafe(32), time.time() + lifetime
        )
        data = {
            "uid": str(user_id),
            "name": name,
            "token": access_token,
            "csrf": session.csrf_token,
            "exp": session.expires_at,
        }
        self._set(response, SESSION_COOKIE, self.sessions.dumps(data), lifetime)
        return session

    def end(self, response: web.StreamResponse) -> None:
        self._clear(response, SESSION_COOKIE)

    # --- the login in progress (OAuth2 ``state``) -----------------------------------------------
    def begin_login(self, response: web.StreamResponse) -> str:
        """A fresh ``state`` for Discord's authorize URL, remembered in a cookie."""
        state = secrets.token_urlsafe(32)
        lifetime = self.config.login_lifetime_s
        self._set(response, LOGIN_COOKIE, self.logins.dumps({"state": state}), lifetime)
        return state

    def login_state(self, request: web.Request) -> str | None:
        token = request.cookies.get(LOGIN_COOKIE)
        data = self.logins.loads(token, self.config.login_lifetime_s) if token else None
        state = data.get("state") if data else None
        return state if isinstance(state, str) else None

    def end_login(self, response: web.StreamResponse) -> None:
        self._clear(response, LOGIN_COOKIE)


class Flash:
    """What an action did, shown once by the page it redirects to (post/redirect/get)."""

    def __init__(self, cookies: SessionCookies) -> None:
        self.cookies = cookies

    def put(self, response: web.StreamResponse, text: str, *, ok: bool = True) -> None:
        data = {"text": text[:2000], "ok": ok}
        self.cookies._set(
            response, FLASH_COOKIE, self.cookies.flashes.dumps(data), FLASH_LIFETIME_S
        )

    def read(self, request: web.Request) -> tuple[str, bool] | None:
        """The message left by the last action, if any (clear it with :meth:`clear`)."""
        token = request.cookies.get(FLASH_COOKIE)
        data = self.cookies.flashes.loads(token, FLASH_LIFETIME_S) if token else None
        if data is None or not isinstance(data.get("text"), str):
            return None
        return data["text"], bool(data.get("ok"))

    def clear(self, response: web.StreamResponse) -> None:
        self.cookies._clear(response, FLASH_COOKIE)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a token from the request with the expected one."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
