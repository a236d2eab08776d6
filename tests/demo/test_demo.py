"""``make demo`` plays its conversation against the real bot process and the simulator, so
it cannot rot: the transcript has the answers it promises (two flowers, ``unknown`` for the
coffee, the correction approved, the taught label answered after the retrain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.run import CACHED, restore_cache, run_demo, save_cache


def after(lines: list[str], marker: str) -> list[str]:
    """The lines after the first that contains ``marker``."""
    index = next(i for i, line in enumerate(lines) if marker in line)
    return lines[index + 1 :]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_demo_plays_its_conversation_with_the_real_bot(tmp_path: Path):
    cache = tmp_path / "cache"
    result = await run_demo(cache=cache, echo=False)
    lines = result.transcript
    text = "\n".join(lines)
    assert result.trained  # an empty cache: the bot trained the default model...
    assert all((cache / name).is_file() for name in CACHED)  # ...and the demo kept it

    answers = [line.split("answer: ", 1)[1] for line in lines if "answer: " in line]
    assert len(answers) == 4, text
    assert answers[0].startswith("daisy ") and answers[1].startswith("sunflower "), answers
    assert answers[2].startswith("unknown (closest: "), answers  # the coffee
    assert answers[3].startswith("cat "), answers  # Cat Cafe's own label, after /retrain
    assert "buttons: [Right] [Wrong...]" in text

    correction = after(lines, 'types "coffee"')
    assert "review queue (1 waiting)" in correction[0], correction[0]
    approved = after(lines, "presses [Approve]")
    assert approved[0].endswith(
        "Approved: the image is learned as coffee (1 taught image(s) of this label)."
    ), approved[0]

    retrained = after(lines, "carol > /retrain")
    assert "Retraining finished" in retrained[0]
    assert any("Images: 1365 (5 taught)" in line for line in retrained[:6]), retrained[:6]
    # what the server can expect, and what to do about it (issue 18)
    report = "\n".join(retrained[:12])
    assert "Own photos answered unknown: " in report, report
    assert "To improve: • add about 5 more photos of *cat* (only 5 photos)" in report, report
    assert (
        answers[3] == after(retrained, "alice > /classify image: cat.jpg")[0].split("answer: ")[1]
    )
    assert result.conversation_s < 120


def test_the_model_cache_is_kept_and_restored_whole(tmp_path: Path):
    data, cache, fresh = tmp_path / "data", tmp_path / "cache", tmp_path / "fresh"
    fresh.mkdir()
    assert not restore_cache(cache, fresh)  # nothing kept yet
    (data / "models").mkdir(parents=True)
    (data / "models" / "current.model").write_bytes(b"model")
    save_cache(data, cache)
    assert not (cache / "models" / "current.model").exists()  # without its features: not kept
    (data / "features.h5").write_bytes(b"features")
    save_cache(data, cache)
    assert restore_cache(cache, fresh)
    assert (fresh / "models" / "current.model").read_bytes() == b"model"
    assert (fresh / "features.h5").read_bytes() == b"features"
