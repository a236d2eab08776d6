"""Which offers the bot signs: price caps and provider allow/deny lists, as a yapapi strategy.

yapapi scores every offer with ``strategy.score_offer``; a negative score rejects it, and
only offers kept in its agreements pool are ever signed. :class:`CappedOffers` is yapapi's
``LeastExpensiveLinearPayuMS`` (linear pay-as-you-go prices, cheapest first) with the
caps from settings, which it compares per second of usage (``golem.usage.cpu_sec``,
``golem.usage.duration_sec``) and per start (the fixed price), plus provider lists by node
id or name. A price on any other usage counter is refused unless it is zero: what cannot
be capped is not signed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from decimal import Decimal

from yapapi import rest
from yapapi.props.com import Counter
from yapapi.strategy import SCORE_REJECTED, LeastExpensiveLinearPayuMS

from golem_backend.golem.costs import PriceCaps
from golem_backend.settings import BackendSettings

logger = logging.getLogger(__name__)

NODE_NAME = "golem.node.id.name"


def price_caps(settings: BackendSettings) -> PriceCaps:
    return PriceCaps(
        glm_per_cpu_hour=settings.golem_max_glm_per_cpu_hour,
        glm_per_env_hour=settings.golem_max_glm_per_env_hour,
        glm_per_start=settings.golem_max_glm_per_start,
    )


class CappedOffers(LeastExpensiveLinearPayuMS):
    """Cheapest offer first; offers above a cap or from a provider not allowed are rejected."""

    def __init__(
        self,
        caps: PriceCaps,
        allow: frozenset[str] = frozenset(),
        deny: frozenset[str] = frozenset(),
        expected_time_secs: int = 3600,
    ) -> None:
        super().__init__(
            expected_time_secs=expected_time_secs,
            max_fixed_price=_glm(caps.glm_per_start),
            max_price_for={
                Counter.CPU: _glm(caps.glm_per_cpu_hour / 3600),
                Counter.TIME: _glm(caps.glm_per_env_hour / 3600),
            },
        )
        # Usage counters without a cap (storage, network...) must be free.
        capped = dict(self._max_price_for)
        self._max_price_for = defaultdict(lambda: Decimal(0), capped)
        self.caps = caps
        self.allow = allow
        self.deny = deny

    def provider_refusal(self, offer: rest.market.OfferProposal) -> str | None:
        """Why this provider is not wanted (allow/deny lists), or None."""
        node_id = (offer.issuer or "").lower()
        name = str(offer.props.get(NODE_NAME) or "")
        if self.deny and (node_id in self.deny or name in self.deny):
            return f"provider {name or node_id} is in GOLEM_PROVIDER_DENY"
        if self.allow and node_id not in self.allow and name not in self.allow:
            return f"provider {name or node_id} is not in GOLEM_PROVIDER_ALLOW"
        return None

    async def score_offer(self, offer: rest.market.OfferProposal) -> float:
        refusal = self.provider_refusal(offer)
        if refusal is not None:
            logger.debug("rejected offer %s: %s", offer.id, refusal)
            return SCORE_REJECTED
        return await super().score_offer(offer)


def build_strategy(settings: BackendSettings) -> CappedOffers:
    return CappedOffers(price_caps(settings), settings.provider_allow, settings.provider_deny)


def _glm(value: float) -> Decimal:
    """The float's exact value: providers publish float coefficients, so an offer exactly at
    a cap compares equal (``Decimal("0.01")`` would be below the float 0.01)."""
    return Decimal(value)
