"""Faults a test injects into the simulated Discord: rate limits, errors, hangs, answers
a client cannot use (a body that is not JSON, JSON of the wrong shape) and a gateway that
sends a malformed event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

#: a rule of ``answer_next``: [method, path_contains, times, status, body, content_type]
RawAnswer = list[Any]
#: a rule of ``mangle_next``: [method, path_contains, times, transform]
Mangling = list[Any]


class FaultInjection:
    """Mixed into :class:`~tests.discord_sim.simulator.DiscordSimulator`."""

    _rate_limits: list[list[Any]]
    _failures: list[list[Any]]
    _hangs: list[list[Any]]
    _raw_answers: list[RawAnswer]
    _manglings: list[Mangling]
    hung: list[tuple[str, str]]
    _release_hung: asyncio.Event

    def notify(self) -> None:
        raise NotImplementedError

    def rate_limit_next(
        self,
        method: str,
        path_contains: str,
        *,
        retry_after: float = 0.2,
        times: int = 1,
        via: bool = True,
    ) -> None:
        """Answer the next ``times`` matching requests with 429 (with a ``Via`` header)."""
        self._rate_limits.append([method.upper(), path_contains, retry_after, times, via])

    def fail_next(
        self,
        method: str,
        path_contains: str,
        *,
        status: int = 400,
        code: int = 50035,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with this Discord error."""
        self._failures.append([method.upper(), path_contains, times, status, code])

    def hang_next(self, method: str, path_contains: str, *, times: int = 1) -> None:
        """Never answer the next ``times`` matching requests (as Spacebar does with the
        callback of an interaction it does not know)."""
        self._hangs.append([method.upper(), path_contains, times])

    def answer_next(
        self,
        method: str,
        path_contains: str,
        *,
        status: int = 200,
        body: str = "{not json",
        content_type: str = "application/json",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with this raw body, unhandled (a
        proxy's HTML error page, a body cut short, JSON that does not parse). ``body`` is
        sent as it is, whatever ``content_type`` claims."""
        self._raw_answers.append([method.upper(), path_contains, times, status, body, content_type])

    def mangle_next(
        self,
        method: str,
        path_contains: str,
        transform: Callable[[Any], Any],
        *,
        times: int = 1,
    ) -> None:
        """Handle the next ``times`` matching requests as usual (their effect stands), then
        answer with ``transform(answer_json)``: a server that did the work and answered in
        a shape the client cannot use (e.g. commands without ids, as Spacebar did)."""
        self._manglings.append([method.upper(), path_contains, times, transform])

    async def send_event(
        self, app: Any, event: str, data: dict[str, Any], guild_id: int | None = None
    ) -> None:
        """Dispatch ``event`` with ``data`` exactly as given (however malformed) to the
        session of ``app`` that receives ``guild_id``'s events."""
        session = self.session_for(app, guild_id)  # type: ignore[attr-defined]
        if session is None:
            raise RuntimeError(f"{app.user.name} is not connected")
        await session.dispatch(event, data)

    def take_raw_answer(self, method: str, path: str) -> web.Response | None:
        """The raw answer ``answer_next`` set for this request, if any (counted)."""
        for rule in self._raw_answers:
            if rule[0] == method and rule[1] in path and rule[2] > 0:
                rule[2] -= 1
                self.notify()
                return web.Response(
                    body=str(rule[4]).encode(), status=rule[3], headers={"Content-Type": rule[5]}
                )
        return None

    def mangle(self, method: str, path: str, answer: web.StreamResponse) -> web.StreamResponse:
        """``answer`` as a ``mangle_next`` rule rewrites it (JSON answers only)."""
        if not isinstance(answer, web.Response) or answer.content_type != "application/json":
            return answer
        for rule in self._manglings:
            if rule[0] == method and rule[1] in path and rule[2] > 0:
                rule[2] -= 1
                self.notify()
                data = rule[3](json.loads(answer.body))  # type: ignore[arg-type]
                return web.Response(
                    body=json.dumps(data).encode(),
                    status=answer.status,
                    content_type="application/json",
                )
        return answer

    def take_fault(self, method: str, path: str) -> tuple[str, int, int] | None:
        """``("hang", 0, 0)``, ``("fail", status, code)`` or ``None`` for this request."""
        for rule in self._hangs:
            if rule[0] == method and rule[1] in path and rule[2] > 0:
                rule[2] -= 1
                return "hang", 0, 0
        for rule in self._failures:
            if rule[0] == method and rule[1] in path and rule[2] > 0:
                rule[2] -= 1
                return "fail", rule[3], rule[4]
        return None

    def clear_faults(self) -> None:
        """Forget every pending ``fail_next``/``hang_next``/``rate_limit_next``/
        ``answer_next``/``mangle_next`` rule."""
        self._failures.clear()
        self._hangs.clear()
        self._rate_limits.clear()
        self._raw_answers.clear()
        self._manglings.clear()

    async def hang(self, method: str, path: str) -> None:
        self.hung.append((method, path))
        self.notify()
        await self._release_hung.wait()

    def take_rate_limit(self, method: str, path: str) -> tuple[float, bool] | None:
        for rule in self._rate_limits:
            if rule[0] == method and rule[1] in path and rule[3] > 0:
                rule[3] -= 1
                return rule[2], rule[4]
        return None
