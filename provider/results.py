"""Plain result types of prediction, shared by the CLI, the backends and the bot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    confidence: float  # probability in [0, 1]


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one image.

    ``label`` is a known label or :data:`UNKNOWN`; ``confidence`` is the probability of the
    best known label (also when the answer is ``unknown``); ``top`` holds the best known
    labels, best first; ``ood_score`` is the out-of-distribution score (higher = less like
    the training data) and ``model_id`` the model that answered.
    """

    label: str
    confidence: float
    top: tuple[LabelScore, ...]
    model_id: str = ""
    ood_score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_unknown(self) -> bool:
        return self.label == UNKNOWN

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "top": [{"label": s.label, "confidence": round(s.confidence, 6)} for s in self.top],
            "model_id": self.model_id,
            "ood_score": round(self.ood_score, 6),
        }
