"""Embeds the bot sends: predictions, errors, /status and the /retrain report."""

from __future__ import annotations

import datetime as dt

import discord
from discord.utils import escape_markdown

from golem_backend import (
    BackendStatus,
    CostSummary,
    InstanceInfo,
    LabelScore,
    Prediction,
    TrainReport,
)

GREEN = discord.Colour(0x2ECC71)
GREY = discord.Colour(0x95A5A6)
RED = discord.Colour(0xE74C3C)
BLUE = discord.Colour(0x3498DB)
CONFUSION_FILE = "confusion.png"


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def bar(value: float, width: int = 10) -> str:
    """``███░░░░░░░`` for 0.3: a confidence that reads at a glance."""
    filled = max(0, min(width, round(value * width)))
    return "█" * filled + "░" * (width - filled)


def score_lines(scores: tuple[LabelScore, ...]) -> str:
    return "\n".join(
        f"`{bar(s.confidence)}` {percent(s.confidence):>4} {escape_markdown(s.label)}"
        for s in scores
    )


def is_unsure(prediction: Prediction, low_confidence: float) -> bool:
    return prediction.is_unknown or prediction.confidence < low_confidence


def prediction_embed(
    prediction: Prediction, *, filename: str, thumbnail_url: str | None, low_confidence: float
) -> discord.Embed:
    """The answer for one image; an unsure answer says so instead of pretending."""
    best = (
        prediction.top[0] if prediction.top else LabelScore(prediction.label, prediction.confidence)
    )
    if is_unsure(prediction, low_confidence):
        embed = discord.Embed(
            title=f"Not sure: closest is {best.label} ({percent(best.confidence)})",
            colour=GREY,
            description=(
                "This doesn't look like anything I was trained on."
                if prediction.is_unknown
                else "My confidence is low, so take this with a grain of salt."
            ),
        )
    else:
        embed = discord.Embed(
            title=f"{prediction.label} ({percent(prediction.confidence)})", colour=GREEN
        )
    if prediction.top:
        name = "Scores" if len(prediction.top) > 1 else "Score"
        embed.add_field(name=name, value=score_lines(prediction.top), inline=False)
    embed.set_author(name=filename[:256])
    if thumbnail_url:
        embed.set_thumbnail(url=thumbnail_url)
    embed.set_footer(text=f"model {prediction.model_id or '?'}")
    return embed


def error_embed(filename: str, message: str) -> discord.Embed:
    embed = discord.Embed(description=message[:4000], colour=RED)
    embed.set_author(name=filename[:256])
    return embed


def _duration(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(seconds)))


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
    embed.add_field(name="Uptime", value=_duration(uptime_s))
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
            f"{_duration(d.at)} {d.action} → {d.instances}: {d.reason}" for d in status.scaling[-5:]
        ]
        embed.add_field(name="Scaling", value="\n".join(lines)[-1024:], inline=False)
    if status.version_mismatch:  # the Golem version handshake: what the operator must fix
        mismatch = status.version_mismatch[:1024]
        embed.add_field(name="Golem version mismatch", value=mismatch, inline=False)
    embed.add_field(name="Watched channels", value=str(watched))
    embed.set_footer(text=f"gateway latency {latency_ms:.0f} ms")
    return embed


def progress_text(stage: str, done: int, total: int, elapsed_s: float) -> str:
    if total > 0:
        frac = min(done / total, 1.0)
        return f"Retraining: {stage} `{bar(frac)}` {done}/{total} ({_duration(elapsed_s)} elapsed)"
    return f"Retraining: {stage}… ({_duration(elapsed_s)} elapsed)"


def report_embed(report: TrainReport, *, taught: int) -> discord.Embed:
    acc = "not measured"
    if report.accuracy is not None:
        acc = percent(report.accuracy)
        if report.accuracy_std is not None:
            acc += f" ± {report.accuracy_std * 100:.0f}"
    embed = discord.Embed(title="Retraining finished", colour=GREEN)
    embed.add_field(name="Accuracy (cross-validated)", value=acc)
    embed.add_field(name="Images", value=f"{report.n_images} ({taught} taught)")
    embed.add_field(name="Duration", value=_duration(report.duration_s))
    embed.add_field(name="Model", value=report.model_id, inline=False)
    labels = ", ".join(report.labels) or "none"
    embed.add_field(name=f"Labels ({len(report.labels)})", value=labels[:1024], inline=False)
    if report.warnings:
        embed.add_field(name="Warnings", value="\n".join(report.warnings)[:1024], inline=False)
    if report.skipped:
        skipped = "\n".join(report.skipped[:10])
        more = f"\n… and {len(report.skipped) - 10} more" if len(report.skipped) > 10 else ""
        embed.add_field(
            name=f"Skipped files ({len(report.skipped)})",
            value=(skipped[:900] + more),
            inline=False,
        )
    if report.confusion_png:
        embed.set_image(url=f"attachment://{CONFUSION_FILE}")
    return embed
