"""What a server can expect of its model, as /retrain, /status and the dashboard say it.

A retrain's report carries the classifier's cross-validated quality
(``TrainReport.extra["quality"]``, see ``provider.quality``): over the server's own labels,
the share answered right with the open-set check included, the share of its own photos
answered ``unknown``, the calibration error of the shown confidence, per-label recall and
hints where a label is short of photos. :func:`quality_of` keeps only a well-formed, bounded
copy of it (whatever trained the model, nothing unchecked reaches a member), which is what
the models table stores under ``metrics["quality"]``; :func:`quality_lines` words it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import discord
from discord.utils import escape_markdown

#: At most this many labels are kept (as for the confusion matrix).
MAX_LABELS = 200
#: A label name or a hint's reason is cut to this many characters.
MAX_TEXT = 120
#: At most this many hints are kept (the weakest labels first).
MAX_HINTS = 25
#: Recall and hints take at most this many characters each in an embed (whose whole
#: text Discord caps at 6000).
FIELD_CHARS = 700


@dataclass(frozen=True, slots=True)
class LabelFigures:
    images: int
    recall: float | None  # held-out photos taken for the label (closed set)
    unknown_rate: float | None  # held-out photos of the label answered `unknown`


@dataclass(frozen=True, slots=True)
class Hint:
    label: str
    add: int  # about how many more photos
    reason: str

    def text(self) -> str:
        photos = "photo" if self.add == 1 else "photos"
        why = f" ({escape_markdown(self.reason)})" if self.reason else ""
        return f"add about {self.add} more {photos} of *{escape_markdown(self.label)}*{why}"


@dataclass(frozen=True, slots=True)
class ModelQuality:
    accuracy: float | None  # right label, `unknown` counted as wrong
    unknown_rate: float | None  # own photos answered `unknown`
    ece: float | None  # expected calibration error of the shown confidence
    per_label: dict[str, LabelFigures]
    hints: tuple[Hint, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "unknown_rate": self.unknown_rate,
            "ece": self.ece,
            "per_label": {
                label: {"images": f.images, "recall": f.recall, "unknown_rate": f.unknown_rate}
                for label, f in self.per_label.items()
            },
            "hints": [{"label": h.label, "add": h.add, "reason": h.reason} for h in self.hints],
        }


def _fraction(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def _count(value: object, limit: int = 10_000_000) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= limit else None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())  # no newlines or runs of spaces from anyone
    return text[:MAX_TEXT] if text else None


def _label_figures(raw: Mapping[object, object]) -> dict[str, LabelFigures]:
    figures: dict[str, LabelFigures] = {}
    for label, entry in list(raw.items())[:MAX_LABELS]:
        name = _text(label)
        if name is None or not isinstance(entry, Mapping):
            continue
        images = _count(entry.get("images"))
        if images is None:
            continue
        figures[name] = LabelFigures(
            images, _fraction(entry.get("recall")), _fraction(entry.get("unknown_rate"))
        )
    return figures


def _hints(raw: object) -> tuple[Hint, ...]:
    if not isinstance(raw, list | tuple):
        return ()
    hints = []
    for entry in raw[:MAX_HINTS]:
        if not isinstance(entry, Mapping):
            continue
        label, add = _text(entry.get("label")), _count(entry.get("add"), 100_000)
        if label is None or not add:
            continue
        hints.append(Hint(label, add, _text(entry.get("reason")) or ""))
    return tuple(hints)


def quality_of(raw: object) -> ModelQuality | None:
    """A well-formed copy of a report's (or a stored model's) quality, or ``None`` when
    there is none; malformed parts are left out, never passed on."""
    if not isinstance(raw, Mapping) or not raw:
        return None
    per_label = raw.get("per_label")
    quality = ModelQuality(
        accuracy=_fraction(raw.get("accuracy")),
        unknown_rate=_fraction(raw.get("unknown_rate")),
        ece=_fraction(raw.get("ece")),
        per_label=_label_figures(per_label) if isinstance(per_label, Mapping) else {},
        hints=_hints(raw.get("hints")),
    )
    if quality.accuracy is None and quality.unknown_rate is None and not quality.per_label:
        return None
    return quality


def share(value: float) -> str:
    """A share with one decimal: 1.6% of own photos answered unknown is not "2%"."""
    return f"{value * 100:.1f}%"


def recall_text(quality: ModelQuality, limit: int = FIELD_CHARS) -> str:
    """Recall per label, weakest first (those are the ones to work on)."""
    measured = [(f.recall, label) for label, f in quality.per_label.items() if f.recall is not None]
    parts = [f"{escape_markdown(label)} {r * 100:.0f}%" for r, label in sorted(measured)]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quality_lines(quality: ModelQuality) -> list[tuple[str, str]]:
    """(field name, value) pairs for an embed: the figures a server can expect, then hints."""
    fields: list[tuple[str, str]] = []
    if quality.accuracy is not None:
        fields.append(("Right on its labels", share(quality.accuracy)))
    if quality.unknown_rate is not None:
        fields.append(("Own photos answered unknown", share(quality.unknown_rate)))
    if quality.ece is not None:
        fields.append(("Calibration error", f"{quality.ece * 100:.1f} points"))
    recall = recall_text(quality)
    if recall:
        fields.append(("Recall per label (weakest first)", recall))
    if quality.hints:
        lines = [f"• {hint.text()}" for hint in quality.hints]
        text = "\n".join(lines)
        cut = text if len(text) <= FIELD_CHARS else text[: FIELD_CHARS - 1] + "…"
        fields.append(("To improve", cut))
    return fields


def add_quality_fields(embed: discord.Embed, quality: ModelQuality) -> None:
    """The figures and hints as fields of ``embed`` (short ones side by side), as
    /retrain's report and /status show them."""
    for name, value in quality_lines(quality):
        embed.add_field(name=name, value=value, inline=len(value) < 40)
