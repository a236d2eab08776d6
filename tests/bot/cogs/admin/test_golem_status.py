"""What operators see of Golem's costs and scaling: the /status embed and the metrics."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from bot.cogs.admin._status import status_embed
from bot.core.metrics import BotMetrics
from golem_backend import BackendStatus, CostSummary, InstanceInfo, ScalingDecision

COSTS = CostSummary(
    budget_glm=2.0,
    spent_glm=0.5,
    per_instance=(("provider-a", 0.3), ("provider-b", 0.2)),
    images=4000,
    glm_per_1000_images=0.125,
    glm_per_hour=0.25,
    projected_glm_per_hour=0.3,
    hours_left=5.0,
)
STATUS = BackendStatus(
    kind="golem",
    ready=True,
    model_id="m1",
    labels=("cat", "dog"),
    accuracy=0.9,
    queue_depth=3,
    requests_served=4000,
    errors=0,
    instances=(
        InstanceInfo("provider-a", "running", "0xa", 2500, glm_accepted=0.3),
        InstanceInfo("provider-b", "draining", "0xb", 1500, glm_accepted=0.2),
    ),
    glm_spent=0.5,
    answered_by="local",
    costs=COSTS,
    scaling=(
        ScalingDecision(60.0, "up", 2, "queue wait 7.0 s (target 5 s), 20 waiting for 30 s"),
        ScalingDecision(900.0, "down", 1, "no request for 300 s"),
    ),
)


def test_status_embed_shows_costs_scaling_and_the_engine_that_answered():
    embed = status_embed(STATUS, uptime_s=1000, watched=1, latency_ms=20).to_dict()
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Last answered by"] == "local"
    assert "provider-a: running (2500 served, 0.3000 GLM)" in fields["Instances"]
    costs = fields["Costs"]
    assert costs.startswith("0.5000 of 2 GLM; 0.1250 GLM per 1000 images (4000 images)")
    assert "0.3000 GLM/h now; budget lasts 5.0 h" in costs
    lines = fields["Scaling"].splitlines()
    assert lines == [
        "0:01:00 up → 2: queue wait 7.0 s (target 5 s), 20 waiting for 30 s",
        "0:15:00 down → 1: no request for 300 s",
    ]


def test_metrics_carry_the_cost_figures():
    metrics = BotMetrics()
    bot = SimpleNamespace(latency=0.05, guilds=[])
    metrics.update_from(bot, STATUS)  # type: ignore[arg-type]
    page = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert page[("classifier_bot_glm_spent", ())] == 0.5
    assert page[("classifier_bot_glm_budget_remaining", ())] == 1.5
    assert page[("classifier_bot_glm_per_1000_images", ())] == 0.125
    assert page[("classifier_bot_glm_per_hour", ())] == 0.25
    assert page[("classifier_bot_glm_projected_per_hour", ())] == 0.3
    assert page[("classifier_bot_glm_budget_hours_left", ())] == 5.0
    assert page[("classifier_bot_golem_instances_target", ())] == 1
    assert page[("classifier_bot_backend_answered_by", (("engine", "local"),))] == 1
    assert page[("classifier_bot_backend_answered_by", (("engine", "golem"),))] == 0
