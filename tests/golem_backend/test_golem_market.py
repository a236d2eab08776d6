"""Price caps and provider lists, through yapapi's own offer handling (``Job._handle_proposal``,
``LeastExpensiveLinearPayuMS``, ``AgreementsPool``) on offers from the market stub."""

from __future__ import annotations

from pathlib import Path

import pytest
from yapapi.engine import Job

from golem_backend.golem.market import build_strategy
from golem_backend.settings import BackendSettings
from tests.golem_backend.harness.market import HarnessMarket, Offer

CAPS = {
    "golem_max_glm_per_cpu_hour": 0.1,
    "golem_max_glm_per_env_hour": 0.05,
    "golem_max_glm_per_start": 0.01,
}
CHEAP = Offer("cheap", "0x" + "a" * 40, 0.05, 0.02, 0.001)
AT_CAPS = Offer("at-caps", "0x" + "b" * 40, 0.1, 0.05, 0.01)
CPU_DEAR = Offer("cpu-dear", "0x" + "c" * 40, 0.1001, 0.02, 0.001)
ENV_DEAR = Offer("env-dear", "0x" + "d" * 40, 0.05, 0.0501, 0.001)
START_DEAR = Offer("start-dear", "0x" + "e" * 40, 0.05, 0.02, 0.0101)
STORAGE_PRICED = Offer(
    "storage-priced", "0x" + "f" * 40, 0.01, 0.01, 0.0, (("golem.usage.storage_gib", 0.001),)
)


def settings(tmp_path: Path, **values: object) -> BackendSettings:
    return BackendSettings(_env_file=None, data_dir=tmp_path, **{**CAPS, **values})  # type: ignore[arg-type]


def kept(job: Job) -> set[str]:
    """Providers whose drafts yapapi keeps in its agreements pool (the only ones it signs)."""
    buffered = job.agreements_pool._offer_buffer.values()
    return {str(b.proposal.props["golem.node.id.name"]) for b in buffered}


async def test_offers_above_any_cap_are_rejected_and_never_signed(tmp_path):
    market = HarnessMarket([CPU_DEAR, ENV_DEAR, START_DEAR, STORAGE_PRICED, AT_CAPS, CHEAP])
    strategy = build_strategy(settings(tmp_path))
    job = await market.negotiate(strategy)
    assert kept(job) == {"at-caps", "cheap"}
    rejected = {name for name, _ in market.rejected}
    assert rejected == {"cpu-dear", "env-dear", "start-dear", "storage-priced"}
    assert set(market.countered) == {"at-caps", "cheap"}

    signed = [await market.sign(strategy) for _ in range(3)]
    assert [o.name if o else None for o in signed] == ["cheap", "at-caps", None]
    assert market.signed == ["cheap", "at-caps"]  # the cheapest first, nothing above a cap


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        ({"golem_provider_deny": "cheap"}, {"at-caps"}),
        ({"golem_provider_deny": CHEAP.node_id.upper().replace("0X", "0x")}, {"at-caps"}),
        ({"golem_provider_allow": f"{AT_CAPS.node_id}"}, {"at-caps"}),
        ({"golem_provider_allow": "cheap, cpu-dear"}, {"cheap"}),  # an allowed one above a cap
    ],
)
async def test_provider_allow_and_deny_lists(tmp_path, lists, expected):
    market = HarnessMarket([CHEAP, AT_CAPS, CPU_DEAR])
    job = await market.negotiate(build_strategy(settings(tmp_path, **lists)))
    assert kept(job) == expected


async def test_zero_caps_refuse_every_priced_offer(tmp_path):
    free = Offer("free", "0x" + "1" * 40, 0.0, 0.0, 0.0)
    market = HarnessMarket([CHEAP, free])
    zero = {key: 0 for key in CAPS}
    job = await market.negotiate(build_strategy(settings(tmp_path, **zero)))
    assert kept(job) == {"free"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"golem_min_instances": 3, "golem_max_instances": 2}, "GOLEM_MIN_INSTANCES \\(3\\)"),
        ({"golem_instances": 4, "golem_max_instances": 2}, "must not exceed GOLEM_MAX_INSTANCES"),
        ({"golem_max_glm_per_cpu_hour": -0.1}, "greater than or equal to 0"),
        ({"golem_max_glm_per_start": -1}, "greater than or equal to 0"),
        ({"golem_provider_deny": "a b"}, "not a node id or name"),
        ({"golem_provider_allow": "x", "golem_provider_deny": "x,y"}, "both allowed and denied: x"),
        ({"golem_fallback": "remote"}, "'none' or 'local'"),
        ({"golem_stop_timeout_s": 0}, "greater than 0"),
        ({"golem_scale_up_depth": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_elastic_settings_are_refused(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, backend="golem", **values)


def test_instance_range_defaults_to_golem_instances(tmp_path):
    fixed = settings(tmp_path, golem_instances=3)
    assert (fixed.min_instances, fixed.max_instances) == (3, 3)
    elastic = settings(tmp_path, golem_min_instances=1, golem_max_instances=4)
    assert (elastic.min_instances, elastic.max_instances) == (1, 4)
    raised = settings(tmp_path, golem_instances=2, golem_max_instances=5)
    assert (raised.min_instances, raised.max_instances) == (2, 5)
