"""Faults a test injects into the simulated Discord: rate limits, errors, hangs."""

from __future__ import annotations

import asyncio
from typing import Any


class FaultInjection:
    """Mixed into :class:`~tests.discord_sim.simulator.DiscordSimulator`."""

    _rate_limits: list[list[Any]]
    _failures: list[list[Any]]
    _hangs: list[list[Any]]
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
        """Forget every pending ``fail_next``/``hang_next``/``rate_limit_next`` rule."""
        self._failures.clear()
        self._hangs.clear()
        self._rate_limits.clear()

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
