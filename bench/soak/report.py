"""The soak's figures: one line per minute, the summary, and the pass/fail criteria."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bench.soak.probes import Sample
from bench.soak.traffic import APOLOGISED, BUSY, ERROR, OUTCOMES, RESULT, UNANSWERED, Record, tally
from bot.core.settings import Settings

MB = 1024 * 1024
CLASSIFYING = ("classify", "hostile", "burst", "crowd", "menu", "watched")
RSS_GROWTH_MAX = 0.10  # end vs after warm-up, both measured idle
RSS_LAST_WINDOW_GROWTH_MAX = 0.05  # end vs the start of the last window (an hour), both idle
FDS_SLACK = 8  # or 10%, whichever is larger
TMP_SLACK_BYTES, TMP_SLACK_FILES = MB, 10
DATA_GROWTH_MAX, DATA_SLACK_BYTES = 0.10, 2 * MB  # data dir without quota-bounded files
# answered images a server keeps for feedback and review: FEEDBACK_IMAGES_KEPT plus the
# review queue's REVIEW_QUEUE_MAX, at their defaults (the soak does not change them)
KEPT_ANSWERS_MAX = (
    Settings.model_fields["feedback_images_kept"].default
    + Settings.model_fields["review_queue_max"].default
)
MODELS_PER_SCOPE = 6  # the current model + MODELS_KEPT (5) previous ones


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


MINUTE_HEADER = (
    f"{'min':>4} {'sent':>5} {'result':>6} {'error':>5} {'busy':>4} {'apol':>4} {'unans':>5} "
    f"{'p50ms':>6} {'p95ms':>6} {'botMB':>6} {'wrk':>3} {'wrkMB':>6} {'fds':>4} "
    f"{'tmpKB':>6} {'dataKB':>7} {'taught':>6}"
)


def minute_line(minute: int, sent: int, records: list[Record], last: Sample | None) -> str:
    counts = Counter(r.outcome for r in records)
    lat = [r.latency for r in records if r.latency is not None and r.kind in CLASSIFYING]
    s = last
    probe = (
        f"{s.bot_rss / MB:>6.0f} {s.workers:>3} {s.workers_rss / MB:>6.0f} {s.fds:>4} "
        f"{s.tmp_bytes / 1024:>6.0f} {s.data_bytes / 1024:>7.0f} {s.taught_files:>6}"
        if s is not None
        else ""
    )
    return (
        f"{minute:>4} {sent:>5} {counts[RESULT]:>6} {counts[ERROR]:>5} {counts[BUSY]:>4} "
        f"{counts[APOLOGISED]:>4} {counts[UNANSWERED]:>5} {ms(pct(lat, 0.5)):>6} "
        f"{ms(pct(lat, 0.95)):>6} {probe}"
    )


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


def criteria(
    records: list[Record],
    samples: list[Sample],
    base: Sample,
    end: Sample,
    learned_after_base: int,
    exit_code: int | None,
) -> list[Verdict]:
    counts = tally(records)["all"]
    fds_limit = base.fds + max(FDS_SLACK, round(base.fds * 0.10))
    data_limit = base.data_bytes * (1 + DATA_GROWTH_MAX) + DATA_SLACK_BYTES
    return [
        Verdict(
            "every request answered", counts[UNANSWERED] == 0, f"{counts[UNANSWERED]} unanswered"
        ),
        Verdict(
            "no unexpected error (apology)",
            counts[APOLOGISED] == 0,
            f"{counts[APOLOGISED]} apologies",
        ),
        Verdict(
            "bot alive throughout",
            all(s.alive for s in samples),
            f"{sum(not s.alive for s in samples)} samples with the bot gone",
        ),
        Verdict("clean stop on SIGTERM (exit 0)", exit_code == 0, f"exit code {exit_code}"),
        Verdict(
            "no worker leak",
            end.workers <= base.workers and end.zombies == 0,
            f"{base.workers} processes after warm-up, {end.workers} at the end, "
            f"{end.zombies} zombies",
        ),
        Verdict(
            "bot RSS growth < 10%",
            end.bot_rss <= base.bot_rss * (1 + RSS_GROWTH_MAX),
            f"{base.bot_rss / MB:.0f} -> {end.bot_rss / MB:.0f} MB "
            f"({(end.bot_rss / base.bot_rss - 1) * 100:+.1f}%)",
        ),
        Verdict(
            "workers RSS growth < 10%",
            end.workers_rss <= base.workers_rss * (1 + RSS_GROWTH_MAX),
            f"{base.workers_rss / MB:.0f} -> {end.workers_rss / MB:.0f} MB "
            f"({(end.workers_rss / base.workers_rss - 1) * 100:+.1f}%)",
        ),
        Verdict(
            "open fds flat",
            end.fds <= fds_limit,
            f"{base.fds} -> {end.fds} (limit {fds_limit})",
        ),
        Verdict(
            "temp dir flat",
            end.tmp_bytes <= base.tmp_bytes + TMP_SLACK_BYTES
            and end.tmp_files <= base.tmp_files + TMP_SLACK_FILES,
            f"{base.tmp_bytes / 1024:.0f} KB/{base.tmp_files} files -> "
            f"{end.tmp_bytes / 1024:.0f} KB/{end.tmp_files} files",
        ),
        Verdict(
            "kept answer images bounded",
            max(s.kept_answer_files for s in samples) <= KEPT_ANSWERS_MAX,
            f"at most {max(s.kept_answer_files for s in samples)} in one server "
            f"(limit {KEPT_ANSWERS_MAX})",
        ),
        Verdict(
            "data dir flat (without taught images, models and kept answer images)",
            end.data_bytes <= data_limit,
            f"{base.data_bytes / 1024:.0f} -> {end.data_bytes / 1024:.0f} KB "
            f"({base.data_files} -> {end.data_files} files)",
        ),
        Verdict(
            "taught image files = images learned",
            end.taught_files - base.taught_files == learned_after_base,
            f"+{end.taught_files - base.taught_files} files, {learned_after_base} learned",
        ),
        Verdict(
            "model files bounded",
            end.model_files_per_scope <= MODELS_PER_SCOPE,
            f"at most {end.model_files_per_scope} in one scope (limit {MODELS_PER_SCOPE}), "
            f"{end.model_files} in all",
        ),
    ]


def summary(records: list[Record], samples: list[Sample], base: Sample, end: Sample) -> str:
    by_kind = tally(records)
    kinds = [k for k in (*CLASSIFYING, "teach", "retrain") if k in by_kind] + ["all"]
    lines = [f"{'requests':<10} " + " ".join(f"{o:>10}" for o in ("sent", *OUTCOMES))]
    for kind in kinds:
        row = by_kind[kind]
        lines.append(
            f"{kind:<10} {sum(row.values()):>10} " + " ".join(f"{row[o]:>10}" for o in OUTCOMES)
        )
    lat = [r.latency for r in records if r.latency is not None and r.kind in CLASSIFYING]
    retrains = [r.latency for r in records if r.kind == "retrain" and r.outcome == RESULT]
    workers = [s.workers for s in samples if s.alive]
    pids = set().union(*(s.worker_pids for s in samples))
    lines += [
        "",
        f"answer latency (classifying requests), p50 / p95: {ms(pct(lat, 0.5))} / "
        f"{ms(pct(lat, 0.95))} ms; retrain p50: {ms(pct(retrains, 0.5))} ms",
        f"bot RSS after warm-up / end (idle): {base.bot_rss / MB:.0f} / {end.bot_rss / MB:.0f} MB"
        f"; max seen {max(s.bot_rss for s in samples) / MB:.0f} MB",
        f"workers RSS (sum) after warm-up / end: {base.workers_rss / MB:.0f} / "
        f"{end.workers_rss / MB:.0f} MB; "
        f"max seen {max(s.workers_rss for s in samples) / MB:.0f} MB",
        f"processes below the bot: min {min(workers)} / max {max(workers)} / end {end.workers}; "
        f"distinct pids seen {len(pids)}",
        f"open fds after warm-up / end: {base.fds} / {end.fds}; max {max(s.fds for s in samples)}",
        f"temp dir after warm-up / end: {base.tmp_bytes / 1024:.0f} KB, {base.tmp_files} files / "
        f"{end.tmp_bytes / 1024:.0f} KB, {end.tmp_files} files; max "
        f"{max(s.tmp_bytes for s in samples) / 1024:.0f} KB",
        f"data dir (no taught images/models/kept answer images) after warm-up / end: "
        f"{base.data_bytes / 1024:.0f} / "
        f"{end.data_bytes / 1024:.0f} KB; taught images {base.taught_files} -> {end.taught_files} "
        f"({end.taught_bytes / 1024:.0f} KB); model files {end.model_files}",
    ]
    errors = Counter(r.text for r in records if r.outcome in (ERROR, BUSY, APOLOGISED))
    lines += ["", "messages (errors and busy), most frequent first:"]
    lines += [f"  {n:>5}  {text}" for text, n in errors.most_common(14)]
    return "\n".join(lines)


def rss_window(samples: list[Sample], mark: Sample, end: Sample, window_min: float) -> Verdict:
    """The bot's RSS over the last ``window_min`` minutes: idle at the window's start and
    at the end (the criterion), with the busy samples between and their trend."""
    inside = [s for s in samples if mark.t <= s.t <= end.t and s.alive]
    rss = [s.bot_rss / MB for s in inside]
    slope = 0.0
    if len(inside) > 2:  # least squares, MB per hour
        ts = [s.t / 3600 for s in inside]
        mt, mr = sum(ts) / len(ts), sum(rss) / len(rss)
        var = sum((t - mt) ** 2 for t in ts)
        slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rss, strict=True)) / var if var else 0
    growth = end.bot_rss / mark.bot_rss - 1
    return Verdict(
        f"bot RSS over the last {window_min:g} min growth <= 5%",
        growth <= RSS_LAST_WINDOW_GROWTH_MAX,
        f"idle {mark.bot_rss / MB:.0f} -> {end.bot_rss / MB:.0f} MB ({growth * 100:+.1f}%); "
        f"under traffic min {min(rss, default=0):.0f} / max {max(rss, default=0):.0f} MB, "
        f"trend {slope:+.1f} MB/h over {len(inside)} samples",
    )
