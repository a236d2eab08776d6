"""The embeds of /status: the server's part (model, labels with counts, accuracy, quotas)
and the operators' part (the backend, Golem's instances, costs and scaling)."""

from __future__ import annotations

import discord
from discord.utils import escape_markdown

from bot.core.embeds import BLUE, GREEN, RED, duration, percent
from bot.core.model_quality import add_quality_fields, quality_of
from bot.db import GuildSettings, ModelRecord, Quotas, RetrainRecord, Usage
from bot.db.quotas import size_text
from golem_backend import BackendStatus, CostSummary, InstanceInfo


def server_status_embed(
    *,
    server_name: str,
    model: ModelRecord | None,
    default_model_id: str | None,
    label_counts: dict[str, int],
    usage: Usage,
    quotas: Quotas,
    last_retrain: RetrainRecord | None,
    settings: GuildSettings,
    watched: int,
) -> discord.Embed:
    embed = discord.Embed(title=f"This server: {server_name}"[:256], colour=BLUE)
    if model is None:
        embed.add_field(name="Model", value=f"the default model ({default_model_id or '?'})")
    else:
        acc = model.metrics.get("accuracy")
        acc_text = "not measured" if not isinstance(acc, int | float) else percent(acc)
        embed.add_field(
            name="Model",
            value=f"{model.model_id}\ntrained <t:{int(model.created_at.timestamp())}:R>",
        )
        embed.add_field(name="Accuracy", value=acc_text)
    counts = ", ".join(
        f"{escape_markdown(label)} ({n})" for label, n in sorted(label_counts.items())
    )
    if len(counts) > 1000:
        counts = counts[:990] + "…"
    embed.add_field(
        name=f"Taught labels ({len(label_counts)})", value=counts or "none yet", inline=False
    )
    quality = quality_of(model.metrics.get("quality")) if model is not None else None
    if quality is not None:  # what the server can expect, hints included
        add_quality_fields(embed, quality)
    elif model is not None:  # a model trained before the quality report
        recall = model.metrics.get("per_label_recall")
        if isinstance(recall, dict) and recall:
            lines = ", ".join(
                f"{escape_markdown(str(k))} {percent(float(v))}" for k, v in sorted(recall.items())
            )
            embed.add_field(name="Recall per label", value=lines[:1024], inline=False)
    if last_retrain is None:
        embed.add_field(name="Last retrain", value="never")
    else:
        when = f"<t:{int(last_retrain.started_at.timestamp())}:R>"
        embed.add_field(name="Last retrain", value=f"{when}: {last_retrain.outcome}")
    embed.add_field(
        name="Quotas",
        value=(
            f"labels {usage.labels}/{quotas.max_labels}\n"
            f"images {usage.images}/{quotas.max_images}\n"
            f"size {size_text(usage.bytes)}/{size_text(quotas.max_bytes)}\n"
            f"retrains this hour {usage.retrains_last_hour}/{quotas.retrains_per_hour}"
        ),
        inline=False,
    )
    embed.add_field(
        name="Default dataset", value="included" if settings.include_default else "not included"
    )
    embed.add_field(name="Watched channels", value=str(watched))
    return embed


def _instance_line(info: InstanceInfo) -> str:
    paid = "" if info.glm_accepted is None else f", {info.glm_accepted:.4f} GLM"
    return f"{info.name}: {info.state} ({info.requests_served} served{paid})"


def cost_text(costs: CostSummary) -> str:
    """Golem's costs for operators: spent, rates, and how long the budget lasts."""
    per_1000 = "–" if costs.glm_per_1000_images is None else f"{costs.glm_per_1000_images:.4f}"
    left = "–" if costs.hours_left is None else f"{costs.hours_left:.1f} h"
    return (
        f"{costs.spent_glm:.4f} of {costs.budget_glm:g} GLM; {per_1000} GLM per 1000 images "
        f"({costs.images} images); {costs.glm_per_hour:.4f} GLM/h so far, "
        f"{costs.projected_glm_per_hour:.4f} GLM/h now; budget lasts {left}"
    )


def status_embed(
    status: BackendStatus, *, uptime_s: float, watched: int, latency_ms: float
) -> discord.Embed:
    embed = discord.Embed(
        title="Classifier status",
        colour=GREEN if status.ready else RED,
        description=status.detail[:1000] or None,
    )
    state = "ready" if status.ready else "not ready"
    embed.add_field(name="Backend", value=f"{status.kind} ({state})")
    embed.add_field(name="Model", value=status.model_id or "none")
    acc = "not measured" if status.accuracy is None else percent(status.accuracy)
    embed.add_field(name="Accuracy", value=acc)
    labels = ", ".join(status.labels) or "none"
    if len(labels) > 1000:
        labels = labels[:990] + "…"
    embed.add_field(name=f"Labels ({len(status.labels)})", value=labels, inline=False)
    embed.add_field(name="Queue", value=str(status.queue_depth))
    embed.add_field(name="Served", value=f"{status.requests_served} ({status.errors} errors)")
    embed.add_field(name="Uptime", value=duration(uptime_s))
    if status.answered_by:
        embed.add_field(name="Last answered by", value=status.answered_by)
    if status.instances:
        lines = [_instance_line(i) for i in status.instances[:15]]
        embed.add_field(name="Instances", value="\n".join(lines)[:1024], inline=False)
    if status.glm_spent is not None:
        embed.add_field(name="GLM spent", value=f"{status.glm_spent:.4f}")
    if status.costs is not None:
        embed.add_field(name="Costs", value=cost_text(status.costs)[:1024], inline=False)
    if status.scaling:
        lines = [
            f"{duration(d.at)} {d.action} → {d.instances}: {d.reason}" for d in status.scaling[-5:]
        ]
        embed.add_field(name="Scaling", value="\n".join(lines)[-1024:], inline=False)
    if status.version_mismatch:  # the Golem version handshake: what the operator must fix
        mismatch = status.version_mismatch[:1024]
        embed.add_field(name="Golem version mismatch", value=mismatch, inline=False)
    embed.add_field(name="Watched channels", value=str(watched))
    embed.set_footer(text=f"gateway latency {latency_ms:.0f} ms")
    return embed
