"""GolemRuntime's accounting from yapapi's own payment and agreement events (the production
path; the harness bills through the same CostLedger)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from ya_market import models
from yapapi import events
from yapapi.rest.market import Agreement, AgreementDetails

from golem_backend.golem.runtime import GolemRuntime
from golem_backend.settings import BackendSettings
from tests.golem_backend.harness.market import Offer

JOB = SimpleNamespace(id="job-1")


def agreement(agreement_id: str, offer: Offer) -> Agreement:
    """A yapapi Agreement whose details (as yagna returns them) carry ``offer``'s prices."""
    now = datetime.now(UTC)
    signed = Agreement(api=None, agreement_id=agreement_id)  # type: ignore[arg-type]
    signed._details = AgreementDetails(
        _ref=models.Agreement(
            agreement_id=agreement_id,
            demand=models.Demand(
                properties={}, constraints="", demand_id="d", requestor_id="0xr", timestamp=now
            ),
            offer=models.Offer(
                properties=offer.properties(),
                constraints="",
                offer_id="o",
                provider_id=offer.node_id,
                timestamp=now,
            ),
            valid_to=now,
            state="Approved",
            timestamp=now,
        )
    )
    return signed


def test_accepted_payments_and_agreed_prices_reach_the_ledger(tmp_path: Path):
    settings = BackendSettings(_env_file=None, data_dir=tmp_path, golem_min_cpu_threads=2)  # type: ignore[call-arg]
    runtime = GolemRuntime(settings)
    first = agreement("agreement-1", Offer("alpha", "0x" + "a" * 40, 0.1, 0.04, 0.01))
    second = agreement("agreement-2", Offer("beta", "0x" + "b" * 40, 0.05, 0.02, 0.0))

    runtime._on_event(events.AgreementConfirmed(job=JOB, agreement=first))
    runtime._on_event(events.AgreementConfirmed(job=JOB, agreement=second))
    # per hour: 0.04 + 2 x 0.1 = 0.24, and 0.02 + 2 x 0.05 = 0.12
    assert runtime.ledger.agreed_hourly == pytest.approx(0.36)

    note = SimpleNamespace(total_amount_due="0.015")
    runtime._on_event(events.DebitNoteAccepted(job=JOB, agreement=first, debit_note=note))
    later = SimpleNamespace(total_amount_due="0.030")  # cumulative, as yagna states it
    runtime._on_event(events.DebitNoteAccepted(job=JOB, agreement=first, debit_note=later))
    invoice = SimpleNamespace(amount="0.005")
    runtime._on_event(events.InvoiceAccepted(job=JOB, agreement=second, invoice=invoice))
    assert runtime.ledger.total == pytest.approx(0.035)
    assert runtime.ledger.per_instance() == pytest.approx({"alpha": 0.03, "beta": 0.005})

    runtime._on_event(events.AgreementTerminated(job=JOB, agreement=first, reason={}))
    assert runtime.ledger.agreed_hourly == pytest.approx(0.12)
    runtime._on_event(events.AgreementTerminated(job=JOB, agreement=second, reason={}))
    assert runtime.ledger.agreed_hourly is None
