"""The per-server part of /status: model, labels with counts, accuracy, quotas."""

from __future__ import annotations

import discord
from discord.utils import escape_markdown

from bot.db import GuildSettings, ModelRecord, Quotas, RetrainRecord, Usage
from bot.db.quotas import size_text
from bot.embeds import BLUE, percent


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
    if model is not None:
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
