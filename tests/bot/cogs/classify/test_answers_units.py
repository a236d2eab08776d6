"""How an answer looks: an unsure answer says so instead of pretending."""

from __future__ import annotations

from bot.cogs.classify._answers import is_unsure, prediction_embed
from bot.core.embeds import bar
from golem_backend import UNKNOWN, LabelScore, Prediction


def test_prediction_embed_is_honest_about_low_confidence():
    top = (LabelScore("daisy", 0.41), LabelScore("tulip", 0.39))
    unsure = Prediction("daisy", 0.41, top, "m1")
    unknown = Prediction(UNKNOWN, 0.41, top, "m1", ood_score=9.0)
    sure = Prediction("daisy", 0.93, top, "m1")
    assert is_unsure(unsure, 0.5) and is_unsure(unknown, 0.1) and not is_unsure(sure, 0.5)
    e = prediction_embed(unknown, filename="f.png", thumbnail_url=None, low_confidence=0.5)
    assert e.title == "Not sure: closest is daisy (41%)"
    assert "doesn't look like anything" in (e.description or "")
    e = prediction_embed(
        sure, filename="f.png", thumbnail_url="https://x/y.png", low_confidence=0.5
    )
    assert e.title == "daisy (93%)" and e.thumbnail.url == "https://x/y.png"
    assert bar(0.0) == "░" * 10 and bar(1.0) == "█" * 10 and bar(0.34) == "███" + "░" * 7
