"""A market stub: providers' offers with linear prices, negotiated by yapapi's own code.

Each :class:`Offer` becomes a real ``ya_market`` proposal read through yapapi's
:class:`~yapapi.rest.market.OfferProposal` (``golem.com.pricing.model.linear.coeffs`` =
[per CPU-second, per second, fixed], ``golem.com.usage.vector`` = [cpu_sec, duration_sec],
as providers publish them). :meth:`HarnessMarket.negotiate` runs yapapi's real
``Job._handle_proposal`` on it, which calls the strategy's ``score_offer`` and
``respond_to_provider_offer``: a rejected offer gets ``reject_proposal_offer`` on this stub,
an accepted one a counter-proposal, then (as a provider answers) its draft lands in
yapapi's ``AgreementsPool``. :meth:`HarnessMarket.sign` signs the best one from that pool
with ``OfferProposal.create_agreement`` (recorded in ``signed``), so only offers the strategy
kept can ever be signed. An offer serves one agreement at a time (``release`` gives it back).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from ya_market import models
from yapapi import events
from yapapi.engine import Job
from yapapi.props import Activity
from yapapi.props.builder import DemandBuilder
from yapapi.rest.market import OfferProposal
from yapapi.strategy import BaseMarketStrategy

PLATFORM = "erc20-hoodi-tglm"
CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"


@dataclasses.dataclass(frozen=True)
class Offer:
    """A provider's offer, prices in GLM as operators think of them."""

    name: str
    node_id: str
    glm_per_cpu_hour: float
    glm_per_env_hour: float
    glm_per_start: float
    other_prices: tuple[tuple[str, float], ...] = ()  # (usage counter, GLM per unit)

    def properties(self) -> dict[str, Any]:
        usage = [CPU_SEC, DURATION_SEC, *(c for c, _ in self.other_prices)]
        coeffs = [
            self.glm_per_cpu_hour / 3600,
            self.glm_per_env_hour / 3600,
            *(float(p) for _, p in self.other_prices),
            float(self.glm_per_start),
        ]
        return {
            "golem.com.scheme": "payu",
            "golem.com.pricing.model": "linear",
            "golem.com.pricing.model.linear.coeffs": coeffs,
            "golem.com.usage.vector": usage,
            "golem.node.id.name": self.name,
            f"golem.com.payment.platform.{PLATFORM}.address": self.node_id,
            "golem.inf.cpu.threads": 1,
        }

    def due(self, seconds: float, cpu_threads: int = 1) -> float:
        """What an agreement of ``seconds`` costs, every thread busy all along."""
        hours = max(0.0, seconds) / 3600
        hourly = self.glm_per_env_hour + self.glm_per_cpu_hour * cpu_threads
        return self.glm_per_start + hourly * hours


class HarnessMarket:
    """See the module docstring; also the ``RequestorApi`` calls yapapi makes on offers."""

    def __init__(self, offers: list[Offer]) -> None:
        self.offers = list(offers)
        self.rejected: list[tuple[str, str]] = []  # (provider name, reason)
        self.countered: list[str] = []  # provider names yapapi answered
        self.signed: list[str] = []  # provider names an agreement was created with
        self.busy: set[str] = set()  # offers in an agreement now
        self._ids = itertools.count(1)
        self._by_proposal: dict[str, Offer] = {}

    # --- the RequestorApi methods OfferProposal calls ----------------------------------

    async def reject_proposal_offer(
        self, subscription_id: str, proposal_id: str, **kw: Any
    ) -> None:
        reason = str(kw.get("request_body", {}).get("message", ""))
        self.rejected.append((self._by_proposal[proposal_id].name, reason))

    async def counter_proposal_demand(
        self, subscription_id: str, proposal_id: str, proposal: Any, **kw: Any
    ) -> str:
        self.countered.append(self._by_proposal[proposal_id].name)
        return f"counter-{proposal_id}"

    async def create_agreement(self, proposal: models.AgreementProposal) -> str:
        offer = self._by_proposal[proposal.proposal_id]
        self.signed.append(offer.name)
        return f"agreement-{next(self._ids)}"

    # --- negotiation --------------------------------------------------------------------

    def _proposal(self, offer: Offer, state: str) -> OfferProposal:
        proposal_id = f"proposal-{next(self._ids)}"
        self._by_proposal[proposal_id] = offer
        event = models.ProposalEvent(
            proposal=models.Proposal(
                properties=offer.properties(),
                constraints="",
                proposal_id=proposal_id,
                issuer_id=offer.node_id,
                state=state,
                timestamp=datetime.now(UTC),
            )
        )
        subscription = SimpleNamespace(id="subscription-1", _api=self)
        return OfferProposal(subscription, event)  # type: ignore[arg-type]

    async def negotiate(self, strategy: BaseMarketStrategy) -> Job:
        """Every free offer through yapapi's ``Job._handle_proposal``; returns the Job, whose
        ``agreements_pool`` holds the drafts yapapi would sign."""
        engine = SimpleNamespace(
            _strategy=strategy,
            _budget_allocations=[SimpleNamespace(payment_platform=PLATFORM)],
            _market_api=SimpleNamespace(_api=self),
            recycle_offer=lambda offer: None,
            emit=lambda event_class, **kw: event_class(**kw),
        )
        expiration = datetime.now(UTC) + timedelta(hours=1)
        job = Job(engine, expiration, payload=None)  # type: ignore[arg-type]
        demand = DemandBuilder()
        demand.add(Activity(expiration=expiration))
        job._demand_builder = demand
        for offer in self.offers:
            if offer.name in self.busy:
                continue
            answer = await job._handle_proposal(self._proposal(offer, "Initial"))
            if isinstance(answer, events.ProposalResponded):  # the provider sends its draft
                await job._handle_proposal(self._proposal(offer, "Draft"))
        return job

    async def sign(self, strategy: BaseMarketStrategy) -> Offer | None:
        """The best offer yapapi kept, signed; None when the strategy kept none."""
        job = await self.negotiate(strategy)
        buffered = job.agreements_pool._offer_buffer
        if not buffered:
            return None
        best = max(buffered.values(), key=lambda b: b.score)
        await best.proposal.create_agreement()
        offer = self._by_proposal[best.proposal.id]
        self.busy.add(offer.name)
        return offer

    def release(self, offer: Offer) -> None:
        self.busy.discard(offer.name)
