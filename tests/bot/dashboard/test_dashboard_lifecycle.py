"""The lifecycle (issue 19) and the door (issue 20) on the dashboard, over real HTTP on the
real bot: a trainer sees and decides only the corrections of channels they can view
(their roles as the bot reads them, against the bot's cached server), administrators
reject all of a member's corrections, an approval keeps the image's author, uploads go
through the door a chunk at a time on their own path for the logged-in member and are
tried again when the door refuses them for load, and a retrain during which an image is
deleted registers nothing and says why."""

from __future__ import annotations

import asyncio
import hashlib

from bot.cogs.feedback._decisions import HIDDEN
from bot.db.scope_models import ScopeForgotten
from tests.bot.dashboard_client import flash_of, get, post, queue_correction, taught, upload
from tests.bot.dashboard_world import http_client, log_in
from tests.bot.door_watch import watch_turns
from tests.bot.harness import flower_bytes
from tests.bot.zips import make_zip, noisy_image
from tests.discord_sim import VIEW_CHANNEL


async def until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (the bot's cache, the door's counters)
            await asyncio.sleep(0.02)


# --- review: the channels a trainer can view -------------------------------------------------
async def test_a_trainer_sees_and_decides_only_corrections_of_channels_they_can_view(dash, http):
    sim, charlie = dash.sim, dash.guilds["Charlie"]
    insiders = await sim.create_role(charlie, "insiders")
    secret = await sim.open_channel(
        charlie, "secret", {charlie.everyone.id: (0, VIEW_CHANNEL), insiders.id: (VIEW_CHANNEL, 0)}
    )
    private = await sim.open_channel(
        charlie, "bobs", {charlie.everyone.id: (0, VIEW_CHANNEL), dash.bob.id: (VIEW_CHANNEL, 0)}
    )
    cached = dash.bot.get_guild(charlie.id)
    await until(lambda: cached.get_channel(secret.id) and cached.get_channel(private.id))
    pics = dash.channels["charlie"].id
    open_item = await queue_correction(dash, "Charlie", "tulip", "red", channel_id=pics)
    secret_item = await queue_correction(dash, "Charlie", "rose", "blue", channel_id=secret.id)
    bobs_item = await queue_correction(
        dash, "Charlie", "lily", "green", channel_id=private.id, sender=dash.alice
    )
    gone_item = await queue_correction(  # a deleted channel: administrators only
        dash, "Charlie", "iris", "white", channel_id=1, sender=dash.alice
    )
    await log_in(dash, http, dash.bob)  # the trainer role, not insiders
    status, page = await get(http, dash.guild_url("Charlie", "/review"))
    assert status == 200 and "2 correction(s)" in page
    assert f"item-{open_item}" in page and f"item-{bobs_item}" in page  # a member overwrite
    assert f"item-{secret_item}" not in page and f"item-{gone_item}" not in page
    assert "2 correction(s) waiting" in (await get(http, dash.guild_url("Charlie")))[1]
    for hidden in (secret_item, gone_item):
        assert (await get(http, dash.guild_url("Charlie", f"/review/{hidden}/image")))[0] == 404
        for verb, data in (("approve", {}), ("reject", {}), ("relabel", {"label": "x"})):
            url = dash.guild_url("Charlie", f"/review/{hidden}/{verb}")
            _, _, page = await post(dash, http, url, data)
            assert flash_of(page) == HIDDEN, verb
    scope = dash.store.guild(charlie.id)
    assert await scope.review_item(secret_item) is not None  # still waiting
    assert await scope.review_item(gone_item) is not None
    assert await taught(dash, "Charlie") == {}

    sim.give_role(charlie, dash.bob, insiders)  # re-read at once (DASHBOARD_ACCESS_RECHECK_S=0)
    _, page = await get(http, dash.guild_url("Charlie", "/review"))
    assert "3 correction(s)" in page and f"item-{secret_item}" in page
    _, _, page = await post(dash, http, dash.guild_url("Charlie", f"/review/{secret_item}/approve"))
    assert flash_of(page).startswith("Approved: the image is learned as rose")
    assert f"item-{gone_item}" not in page
    assert await taught(dash, "Charlie") == {"rose": 1}


async def test_administrators_reject_all_of_a_members_corrections_after_confirming(dash, http):
    alpha = dash.store.guild(dash.guilds["Alpha"].id)
    carols = [await queue_correction(dash, "Alpha", f"l{i}", f"#{i}0{i}0{i}0") for i in range(2)]
    bobs = await queue_correction(dash, "Alpha", "rose", "blue", sender=dash.bob)
    await log_in(dash, http, dash.alice)
    _, page = await get(http, dash.guild_url("Alpha", "/review"))
    assert page.count("Reject all from carol") == 2 * 2  # the summary and the button, twice
    assert "Reject all from bob" in page
    url = dash.guild_url("Alpha", f"/review/member/{dash.carol.id}/reject")
    status, _, page = await post(dash, http, url)
    assert status == 302 and flash_of(page) == "Rejected 2 waiting correction(s) from that member."
    assert [await alpha.review_item(i) for i in carols] == [None, None]
    assert await alpha.review_item(bobs) is not None
    assert await alpha.label_counts() == {}  # rejected, none taught
    forged = dash.guild_url("Alpha", f"/review/member/{'9' * 20}/reject")  # past 2^63
    _, _, page = await post(dash, http, forged)
    assert flash_of(page) == "Rejected 0 waiting correction(s) from that member."
    assert await alpha.review_item(bobs) is not None

    charlie = dash.store.guild(dash.guilds["Charlie"].id)
    theirs = await queue_correction(
        dash, "Charlie", "tulip", "red", channel_id=dash.channels["charlie"].id
    )
    async with http_client() as trainer:
        await log_in(dash, trainer, dash.bob)
        _, page = await get(trainer, dash.guild_url("Charlie", "/review"))
        assert f"item-{theirs}" in page and "Reject all from" not in page
        url = dash.guild_url("Charlie", f"/review/member/{dash.carol.id}/reject")
        status, _, _ = await post(dash, trainer, url)
        assert status == 403
    assert await charlie.review_item(theirs) is not None


async def test_an_approval_is_taught_as_sent_and_posted_through_the_door(dash, http):
    """The author of the image (not the member who corrected it) is recorded, so their
    /forget mine reaches it; the check is a turn at the door for the reviewer."""
    turns = watch_turns(dash.bot.admission)
    item = await queue_correction(dash, "Alpha", "tulip", "red", author=dash.bob)
    await log_in(dash, http, dash.alice)
    _, _, page = await post(dash, http, dash.guild_url("Alpha", f"/review/{item}/approve"))
    assert flash_of(page).startswith("Approved")
    [record] = await dash.store.guild(dash.guilds["Alpha"].id).taught()
    assert (record.user_id, record.author_id) == (dash.carol.id, dash.bob.id)
    alpha = dash.guilds["Alpha"].id
    assert [(t.path, t.member_id, t.images, t.server_id) for t in turns] == [
        ("review_approval", dash.alice.id, 1, alpha)
    ]


# --- uploads through the door --------------------------------------------------------------
async def test_uploads_go_through_the_door_a_chunk_at_a_time_for_the_member(dash, http):
    turns = watch_turns(dash.bot.admission)
    await log_in(dash, http, dash.alice)
    files = [(f"d{i}.jpg", noisy_image(100 + i)) for i in range(23)]
    status, body = await upload(dash, http, "Alpha", files, "daisy")
    assert status == 200 and body["learned"] == 23
    archive = make_zip([(f"tulip/{i}.jpg", noisy_image(200 + i)) for i in range(4)])
    status, body = await upload(dash, http, "Alpha", [("t.zip", archive)])
    assert status == 200 and body["learned"] == 4
    alice, alpha = dash.alice.id, dash.guilds["Alpha"].id
    assert [(t.path, t.member_id, t.images, t.server_id) for t in turns] == [
        ("dashboard_upload", alice, n, alpha) for n in (10, 10, 3, 4)
    ]
    assert dash.backend.calls[-4:] == [10, 10, 3, 4]
    assert dash.bot.admission.stats().released_images == 0


async def test_an_upload_refused_for_load_is_tried_again(dash, http):
    """Nothing serves at first (the door refuses with NoCapacity): the chunk is tried
    again after a second and taught once the classifier is back."""
    admission = dash.bot.admission
    refused = ("dashboard_upload", "no_capacity")
    await log_in(dash, http, dash.alice)
    dash.backend.images_per_s = 0.0
    files = [(f"d{i}.jpg", flower_bytes("daisy", i)) for i in range(2)]
    sending = asyncio.create_task(upload(dash, http, "Alpha", files, "daisy"))
    await until(lambda: admission.refused[refused] >= 1)
    assert not sending.done()
    dash.backend.images_per_s = 1000.0
    status, body = await sending
    assert status == 200 and body["learned"] == 2, body
    assert admission.refused[refused] >= 1 and admission.admitted["dashboard_upload"] == 1


# --- retrain: a forget while it trains ------------------------------------------------------
async def test_an_image_deleted_while_a_retrain_runs_discards_its_model(dash, http):
    await log_in(dash, http, dash.alice)
    for label in ("daisy", "tulip"):
        files = [(f"{label}{i}.jpg", flower_bytes(label, i)) for i in range(3)]
        await upload(dash, http, "Alpha", files, label)
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    dash.backend.retrain_gate = asyncio.Event()
    try:
        _, _, page = await post(dash, http, dash.guild_url("Alpha", "/retrain"))
        assert "Retraining started" in flash_of(page)
        await asyncio.wait_for(dash.backend.retraining.wait(), 10)
        sha = hashlib.sha256(flower_bytes("daisy", 0)).hexdigest()
        _, _, page = await post(dash, http, dash.guild_url("Alpha", f"/labels/daisy/{sha}/delete"))
        assert "Deleted one image of daisy" in flash_of(page)
    finally:
        dash.backend.retrain_gate.set()
    url = dash.guild_url("Alpha", "/retrain/status")
    async with asyncio.timeout(10):
        while True:
            async with http.get(url) as resp:
                state = await resp.json()
            if not state["running"] and state["last"] and state["last"]["outcome"]:
                break
            await asyncio.sleep(0.05)
    assert state["last"]["outcome"] == "failed"
    assert state["last"]["detail"] == ScopeForgotten().message
    assert state["model_id"] is None and await scope.current_model() is None
    _, page = await get(http, dash.guild_url("Alpha", "/models"))
    assert "something was forgotten" in page
