"""The per-server pages in the real Chromium, on the real bot's process: drag-and-drop
upload with per-file progress, the review grid by mouse and by keyboard, retrain with live
progress, rollback; phone-sized screenshots of the labels page and the review grid (set
``DASHBOARD_SCREENSHOTS`` to a folder to keep them). No page may log a script error or a
Content-Security-Policy violation."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from playwright.async_api import ConsoleMessage, Page

from tests.bot.dashboard_world import DashboardWorld
from tests.bot.harness import flower_bytes, png_bytes
from tests.bot.images import TEXT_AS_PNG
from tests.bot.zips import make_zip


@pytest_asyncio.fixture
async def page(browser_page: Page, dash: DashboardWorld) -> AsyncIterator[Page]:
    """The browser page, failing the test on any script error or console error of the
    dashboard's pages (a CSP violation is one; the simulator's consent page is not ours)."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type == "error" and not where.startswith(f"http://127.0.0.1:{dash.sim.port}"):
            problems.append(f"{message.text} ({where})")

    browser_page.on("console", on_console)
    browser_page.on("pageerror", lambda error: problems.append(str(error)))
    yield browser_page
    assert not problems, problems


async def log_in(page: Page, dash: DashboardWorld, who: str = "alice") -> None:
    await page.goto(dash.url + "/")
    await page.get_by_role("link", name="Log in with Discord").click()
    await page.get_by_role("button", name=f"Authorize as {who}").click()
    await page.wait_for_url(dash.url + "/servers")


async def drop_files(page: Page, selector: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drag files onto ``selector`` as a desktop would (a drop event with a DataTransfer)."""
    encoded = [(name, base64.b64encode(data).decode(), kind) for name, data, kind in files]
    transfer = await page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64, type] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type }));
            }
            return dt;
        }""",
        encoded,
    )
    await page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    await page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


async def no_sideways_scroll(page: Page) -> bool:
    return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def keep_screenshot(path: Path) -> None:
    folder = os.environ.get("DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)


async def queue_correction(dash: DashboardWorld, label: str, image: str | bytes) -> int:
    """``image``: a colour (a small PNG), or a photo's bytes (JPEG)."""
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    photo = isinstance(image, bytes)
    answer_id = await scope.record_answer(
        channel_id=1,
        user_id=dash.carol.id,
        model_id="scripted-1",
        label="daisy",
        confidence=0.62,
        data=image if photo else png_bytes((96, 96), image),
        extension="jpg" if photo else "png",
    )
    record = await scope.answer(answer_id)
    assert record is not None
    await scope.enqueue_review(record, label, user_id=dash.carol.id, user_name="carol")
    return (await scope.review_items(100))[-1].item_id


async def test_drag_and_drop_upload_shows_each_files_progress_and_outcome(page: Page, dash):
    await log_in(page, dash)
    await page.goto(dash.guild_url("Alpha", "/upload"))
    await page.get_by_label("Label").fill("sunflower")
    files = [
        ("one.jpg", flower_bytes("sunflower", 0), "image/jpeg"),
        ("two.jpg", flower_bytes("sunflower", 1), "image/jpeg"),
        ("fake.jpg", TEXT_AS_PNG, "image/jpeg"),
    ]
    await drop_files(page, "#drop", files)
    status = page.locator("#overall-text")
    await status.filter(has_text="Done").wait_for()
    assert await status.text_content() == "Done: learned 2 image(s) from 3 file(s)."
    assert await page.locator("#overall").get_attribute("value") == "3"
    rows = await page.locator("#files-progress li").all_text_contents()
    assert rows[0].startswith("one.jpg: learned") and rows[1].startswith("two.jpg: learned")
    assert rows[2].startswith("fake.jpg: That file is not an image")
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    assert await scope.label_counts() == {"sunflower": 2}

    zipped = make_zip(
        [("rose/1.jpg", flower_bytes("tulip", 4)), ("rose/2.jpg", flower_bytes("tulip", 5))]
    )
    await page.set_input_files(
        "#files", [{"name": "roses.zip", "mimeType": "application/zip", "buffer": zipped}]
    )
    await page.get_by_role("button", name="Teach").click()
    await status.filter(has_text="Done").wait_for()
    assert "Learned 2 of 2 image(s) (rose 2)" in (
        await page.locator("#files-progress").text_content() or ""
    )
    assert await scope.label_counts() == {"sunflower": 2, "rose": 2}

    await page.goto(dash.guild_url("Alpha", "/labels"))
    assert await page.get_by_role("link", name="rose", exact=True).is_visible()
    examples = page.get_by_role("list", name="Examples of sunflower").get_by_role("img")
    assert await examples.count() == 2
    loaded = await examples.first.evaluate("(img) => img.complete && img.naturalWidth > 0")
    assert loaded, "the example image did not load"


async def test_the_review_grid_by_mouse_and_by_keyboard(page: Page, dash):
    for label, colour in (("tulip", "red"), ("rose", "blue"), ("lily", "green")):
        await queue_correction(dash, label, colour)
    await log_in(page, dash)
    await page.goto(dash.guild_url("Alpha", "/review"))
    grid = page.get_by_role("list", name="Waiting corrections")
    assert await grid.get_by_role("listitem").count() == 3
    await page.get_by_role("button", name="Approve tulip (sent by carol)").click()
    await page.get_by_role("status").filter(has_text="Approved").wait_for()
    assert await grid.get_by_role("listitem").count() == 2
    await page.get_by_role("button", name="Reject rose (sent by carol)").click()
    assert await page.get_by_role("status").text_content() == "Rejected rose."
    # the last one by keyboard alone: type another label, then Enter on Relabel
    field = page.get_by_label("Another label")
    await field.focus()
    await page.keyboard.type("daisy")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Relabel"
    await page.keyboard.press("Enter")
    await page.get_by_role("status").filter(has_text="Approved").wait_for()
    assert await page.get_by_text("The review queue is empty.").is_visible()
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    assert await scope.label_counts() == {"tulip": 1, "daisy": 1}


async def test_retrain_with_live_progress_then_rollback(page: Page, dash):
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    for i in range(4):
        for label in ("daisy", "tulip"):
            await scope.add_taught(label, flower_bytes(label, i), "jpg", user_id=1, user_name="x")
    dash.backend.retrain_steps, dash.backend.retrain_step_s = 8, 0.4
    await log_in(page, dash)
    await page.goto(dash.guild_url("Alpha", "/models"))
    assert await page.get_by_text("answers with the default model").is_visible()
    await page.get_by_role("button", name="Retrain now").click()
    live = page.locator("#retrain-text")
    await live.filter(has_text="Retraining: training").wait_for()
    assert await page.get_by_role("button", name="Retrain now").is_disabled()
    bar = await page.locator("#retrain-bar").get_attribute("value")
    assert bar is not None
    seen = await live.text_content() or ""
    assert "/8" in seen
    # when it ends the page reloads itself with the new model
    await page.get_by_role("heading", name="Current model").wait_for()
    await page.locator("table.confusion").wait_for(timeout=30_000)
    model = await scope.current_model()
    assert model is not None and await page.get_by_text(model.model_id).first.is_visible()
    assert await page.get_by_role("button", name="Retrain now").is_enabled()
    await page.get_by_role("button", name="Roll back to the default model").click()
    assert "now uses the default model" in (await page.get_by_role("status").text_content() or "")
    assert await scope.current_model() is None


async def test_phone_screenshots_of_the_labels_page_and_the_review_grid(page: Page, dash, tmp_path):
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    for i in range(6):
        await scope.add_taught("daisy", flower_bytes("daisy", i), "jpg", user_id=1, user_name="ann")
    for i in range(3):
        await scope.add_taught(
            "a_rather_long_label_name", flower_bytes("tulip", i), "jpg", user_id=1, user_name="ann"
        )
    await scope.add_taught(
        "sunflower", flower_bytes("sunflower", 0), "jpg", user_id=1, user_name="ann"
    )
    for label, photo in (
        ("tulip", flower_bytes("tulip", 7)),
        ("bluebell", flower_bytes("bluebell", 2)),
    ):
        await queue_correction(dash, label, photo)
    await page.set_viewport_size({"width": 375, "height": 740})
    await log_in(page, dash)
    shots = []
    for name, path in (("labels", "/labels"), ("review", "/review")):
        await page.goto(dash.guild_url("Alpha", path))
        await page.wait_for_load_state("networkidle")
        assert await no_sideways_scroll(page), f"the {name} page scrolls sideways on a phone"
        for button in await page.get_by_role("button").all():
            box = await button.bounding_box()
            assert box is not None and box["height"] >= 44, await button.text_content()
        shot = tmp_path / f"dashboard-{name}-phone.png"
        await page.screenshot(path=shot, full_page=True)
        keep_screenshot(shot)
        shots.append(shot)
    assert all(s.stat().st_size > 10_000 for s in shots)
