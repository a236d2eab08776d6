"""The dashboard's per-server pages over real HTTP, served by the real bot's process:
labels, images, deleting, the review grid, models, retrain, rollback, settings and rules;
each checked against the server in the URL and the member's role (a member without the
role, a trainer on administrators' actions, another server's ids in URLs), and never
showing another server's data. Uploads: ``test_dashboard_uploads.py``."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import aiohttp
import pytest

from tests.bot.dashboard_client import (
    flash_of,
    get,
    post,
    queue_correction,
    taught,
    upload,
)
from tests.bot.dashboard_world import DashboardWorld, http_client, log_in, running_world
from tests.bot.harness import flower_bytes, png_bytes
from tests.bot.tenancy_world import poll


async def test_a_member_without_the_role_can_neither_see_nor_teach(dash, http):
    await log_in(dash, http, dash.carol)  # a plain member of Alpha and Charlie
    for server in ("Alpha", "Charlie"):
        for page in ("", "/labels", "/upload", "/review", "/models", "/settings"):
            assert (await get(http, dash.guild_url(server, page)))[0] == 404, (server, page)
        status, _ = await upload(dash, http, server, [("a.jpg", flower_bytes("daisy"))], "x")
        assert status == 404
    assert await taught(dash, "Alpha") == {} and await taught(dash, "Charlie") == {}


async def test_a_trainer_teaches_and_reviews_but_not_what_is_for_administrators(dash, http):
    await log_in(dash, http, dash.bob)  # the trainer role in Charlie
    status, body = await upload(dash, http, "Charlie", [("a.jpg", flower_bytes("daisy"))], "daisy")
    assert status == 200 and body["learned"] == 1
    for page in ("/labels", "/upload", "/review", "/models"):
        assert (await get(http, dash.guild_url("Charlie", page)))[0] == 200, page
    assert (await get(http, dash.guild_url("Charlie", "/settings")))[0] == 403
    for action, data in (
        ("/retrain", {}),
        ("/models/rollback", {}),
        ("/settings", {"auto_retrain": "5"}),
        ("/rules", {"label": "*", "action": "nothing", "threshold": "1"}),
        ("/rules/remove", {"label": "*"}),
    ):
        status, _, _ = await post(dash, http, dash.guild_url("Charlie", action), data)
        assert status == 403, action
    assert (await dash.store.guild(dash.guilds["Charlie"].id).options()).auto_retrain_after == 0
    assert await dash.store.guild(dash.guilds["Charlie"].id).rules() == []


async def test_another_servers_ids_in_urls_find_nothing(dash, http):
    await log_in(dash, http, dash.alice)
    bravo = dash.store.guild(dash.guilds["Bravo"].id)
    await bravo.add_taught("rose", flower_bytes("tulip", 3), "jpg", user_id=1, user_name="x")
    [rose] = await bravo.taught()
    item = await queue_correction(dash, "Bravo", "rose")
    alpha = dash.guild_url("Alpha")
    # Bravo's image and review item through Alpha's pages: not found
    assert (await get(http, f"{alpha}/images/{rose.sha256}"))[0] == 404
    assert (await get(http, f"{alpha}/review/{item}/image"))[0] == 404
    status, _, page = await post(dash, http, f"{alpha}/review/{item}/approve")
    assert status == 302 and "already handled" in flash_of(page)
    status, _, page = await post(dash, http, f"{alpha}/labels/rose/{rose.sha256}/delete")
    assert status == 302 and "no such image" in flash_of(page).lower()
    assert len(await bravo.taught()) == 1 and await bravo.review_item(item) is not None
    # through Bravo's own pages (alice owns it) they are there
    assert (await get(http, dash.guild_url("Bravo", f"/images/{rose.sha256}")))[0] == 200
    # ...and a server she may not open answers 404 whatever the path
    for server in ("Charlie", "Delta", "Foxtrot"):
        for page in ("/labels", f"/images/{rose.sha256}", f"/review/{item}/image", "/models"):
            assert (await get(http, dash.guild_url(server, page)))[0] == 404, (server, page)


async def test_pages_never_show_another_servers_data(dash, http):
    await log_in(dash, http, dash.alice)
    await upload(dash, http, "Bravo", [("r.jpg", flower_bytes("tulip", 5))], "secretrose")
    await queue_correction(dash, "Bravo", "secretlily")
    for page in ("", "/labels", "/upload", "/review", "/models", "/settings"):
        status, body = await get(http, dash.guild_url("Alpha", page))
        assert status == 200, page
        assert "secretrose" not in body and "secretlily" not in body, page
        assert "Bravo" not in body, page
    _, body = await get(http, dash.guild_url("Bravo", "/labels"))
    assert "secretrose" in body


# --- labels and images --------------------------------------------------------------------
async def test_labels_show_counts_recall_and_examples_served_with_their_type(dash, http):
    await log_in(dash, http, dash.alice)
    files = [("a.jpg", flower_bytes("daisy", 0)), ("b.png", png_bytes(colour="blue"))]
    await upload(dash, http, "Alpha", files, "rose")
    status, page = await get(http, dash.guild_url("Alpha", "/labels"))
    assert status == 200 and ">rose</a>" in page and "2 taught" in page
    assert ">daisy</a>" in page and ">tulip</a>" in page  # the default model's labels
    assert "not in the model yet" in page and "needs more examples" in page
    shas = re.findall(r"/images/([0-9a-f]{64})", page)
    assert sorted(shas) == sorted(hashlib.sha256(d).hexdigest() for _, d in files)
    for name, data in files:
        sha = hashlib.sha256(data).hexdigest()
        async with http.get(dash.guild_url("Alpha", f"/images/{sha}")) as resp:
            assert resp.status == 200 and await resp.read() == data
            expected = "image/png" if name.endswith("png") else "image/jpeg"
            assert resp.headers["Content-Type"] == expected
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Cache-Control"].startswith("private")
    assert (await get(http, dash.guild_url("Alpha", "/images/" + "0" * 64)))[0] == 404
    for bad in ("/images/../../bot.db", "/images/%2e%2e%2fbot.db", "/images/ABC"):
        assert (await get(http, dash.guild_url("Alpha", bad)))[0] == 404, bad


async def test_trainers_delete_their_own_images_and_administrators_any(dash, http):
    charlie = dash.store.guild(dash.guilds["Charlie"].id)
    await charlie.add_taught(
        "daisy", flower_bytes("daisy", 0), "jpg", user_id=dash.bob.id, user_name="bob"
    )
    await charlie.add_taught(
        "daisy", flower_bytes("daisy", 1), "jpg", user_id=999, user_name="other"
    )
    mine, theirs = (hashlib.sha256(flower_bytes("daisy", i)).hexdigest() for i in (0, 1))
    await log_in(dash, http, dash.bob)
    _, page = await get(http, dash.guild_url("Charlie", "/labels/daisy"))
    assert page.count(">Delete</button>") == 1  # only on bob's own image
    status, _, page = await post(
        dash, http, dash.guild_url("Charlie", f"/labels/daisy/{theirs}/delete")
    )
    assert status == 302 and "There is no such image of daisy taught by you" in flash_of(page)
    _, _, page = await post(dash, http, dash.guild_url("Charlie", f"/labels/daisy/{mine}/delete"))
    assert "Deleted one image of daisy" in flash_of(page)
    assert await charlie.label_counts() == {"daisy": 1}
    alpha = dash.store.guild(dash.guilds["Alpha"].id)
    await alpha.add_taught("tulip", flower_bytes("tulip", 0), "jpg", user_id=999, user_name="x")
    async with http_client() as admin:
        await log_in(dash, admin, dash.alice)
        sha = hashlib.sha256(flower_bytes("tulip", 0)).hexdigest()
        _, _, page = await post(dash, admin, dash.guild_url("Alpha", f"/labels/tulip/{sha}/delete"))
        assert "Deleted one image of tulip" in flash_of(page)
    assert await alpha.label_counts() == {}


# --- the review grid ----------------------------------------------------------------------


async def test_the_review_grid_approves_rejects_and_relabels(dash, http):
    await log_in(dash, http, dash.alice)
    first = await queue_correction(dash, "Alpha", "tulip", "red")
    second = await queue_correction(dash, "Alpha", "rose", "blue")
    third = await queue_correction(dash, "Alpha", "lily", "green")
    status, page = await get(http, dash.guild_url("Alpha", "/review"))
    assert status == 200 and "3 correction(s)" in page
    assert page.index(f"item-{first}") < page.index(f"item-{second}") < page.index(f"item-{third}")
    async with http.get(dash.guild_url("Alpha", f"/review/{first}/image")) as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == png_bytes((48, 48), "red")
    _, _, page = await post(dash, http, dash.guild_url("Alpha", f"/review/{first}/approve"))
    assert "Approved" in flash_of(page)
    _, _, page = await post(dash, http, dash.guild_url("Alpha", f"/review/{second}/reject"))
    assert flash_of(page) == "Rejected rose."
    _, _, page = await post(
        dash, http, dash.guild_url("Alpha", f"/review/{third}/relabel"), {"label": "Daisy"}
    )
    assert "Approved" in flash_of(page)
    scope = dash.store.guild(dash.guilds["Alpha"].id)
    assert await scope.label_counts() == {"tulip": 1, "daisy": 1}
    records = await scope.taught()
    assert {r.user_id for r in records} == {dash.carol.id}  # taught as the member who sent it
    assert await scope.review_items(10) == []
    _, _, page = await post(dash, http, dash.guild_url("Alpha", f"/review/{first}/approve"))
    assert "already handled" in flash_of(page)
    _, _, page = await post(
        dash, http, dash.guild_url("Alpha", f"/review/{third}/relabel"), {"label": "../x"}
    )
    assert "not a valid label" in flash_of(page)


# --- models, retrain, rollback -------------------------------------------------------------
async def wait_retrained(
    dash: DashboardWorld, http: aiohttp.ClientSession, server: str
) -> dict[str, Any]:
    url = dash.guild_url(server, "/retrain/status")
    states = []
    async with asyncio.timeout(30):
        while True:
            async with http.get(url) as resp:
                state = await resp.json()
            states.append(state)
            if not state["running"] and state["last"] and state["last"]["outcome"]:
                return {"final": state, "seen": states}
            await asyncio.sleep(0.05)


async def test_retrain_with_live_progress_then_the_model_page_and_rollback(dash, http):
    await log_in(dash, http, dash.alice)
    for label in ("daisy", "tulip"):
        files = [(f"{label}{i}.jpg", flower_bytes(label, i)) for i in range(4)]
        await upload(dash, http, "Alpha", files, label)
    dash.backend.retrain_steps, dash.backend.retrain_step_s = 5, 0.2
    status, _, page = await post(dash, http, dash.guild_url("Alpha", "/retrain"))
    assert status == 302 and "Retraining started" in flash_of(page)
    assert 'data-running="yes"' in page
    status, _, page = await post(dash, http, dash.guild_url("Alpha", "/retrain"))
    assert "already running" in flash_of(page)
    result = await wait_retrained(dash, http, "Alpha")
    assert any(
        s["running"] and s["stage"] == "training" and s["total"] == 5 for s in result["seen"]
    )
    final = result["final"]
    assert final["last"]["outcome"] == "ok" and final["model_id"]
    _, page = await get(http, dash.guild_url("Alpha", "/models"))
    assert final["model_id"] in page and "Accuracy (cross-validated): <strong>75%</strong>" in page
    assert "Confusion matrix" in page and '<td class="hit">2</td>' in page
    assert "right <strong>70.0%</strong>, own photos answered <em>unknown</em> 5.0%" in page
    assert "Add about 6 more photos of <strong>daisy</strong> (only 4 photos)." in page
    first_model = final["model_id"]
    await upload(dash, http, "Alpha", [("new.jpg", flower_bytes("daisy", 7))], "daisy")
    dash.backend.retrain_steps = 0
    await post(dash, http, dash.guild_url("Alpha", "/retrain"))
    second_model = (await wait_retrained(dash, http, "Alpha"))["final"]["model_id"]
    assert second_model != first_model
    _, _, page = await post(dash, http, dash.guild_url("Alpha", "/models/rollback"))
    assert flash_of(page) == f"Rolled back: this server now uses model {first_model}."
    _, _, page = await post(dash, http, dash.guild_url("Alpha", "/models/rollback"))
    assert flash_of(page) == "Rolled back: this server now uses the default model."
    _, _, page = await post(dash, http, dash.guild_url("Alpha", "/models/rollback"))
    assert "nothing to roll back" in flash_of(page)


@pytest.mark.parametrize("dash", [{"GUILD_MAX_RETRAINS_PER_HOUR": "1"}], indirect=True)
async def test_the_retrain_quota_is_the_commands_quota(dash, http):
    await log_in(dash, http, dash.alice)
    await upload(dash, http, "Alpha", [("a.jpg", flower_bytes("daisy"))], "daisy")
    await post(dash, http, dash.guild_url("Alpha", "/retrain"))
    await wait_retrained(dash, http, "Alpha")
    status, _, page = await post(dash, http, dash.guild_url("Alpha", "/retrain"))
    assert status == 302 and "retrain" in flash_of(page).lower() and "hour" in flash_of(page)
    assert "started" not in flash_of(page)


# --- settings and rules ---------------------------------------------------------------------
async def test_settings_are_saved_through_the_commands_checks(dash, http):
    await log_in(dash, http, dash.alice)
    alpha = dash.guilds["Alpha"]
    role = await dash.sim.create_role(alpha, "helpers")
    await poll(lambda: dash.bot.get_guild(alpha.id).get_role(role.id) is not None)
    _, page = await get(http, dash.guild_url("Alpha", "/settings"))
    assert ">helpers</option>" in page and ">@everyone<" not in page
    url = dash.guild_url("Alpha", "/settings")
    form = {
        "include_default": "on",
        "trainer_role": str(role.id),
        "low_confidence": "65",
        "auto_retrain": "20",
    }
    _, _, page = await post(dash, http, url, form)
    assert flash_of(page) == "Settings saved."
    scope = dash.store.guild(alpha.id)
    assert (await scope.settings()).trainer_role_id == role.id
    options = await scope.options()
    assert options.low_confidence == 0.65 and options.auto_retrain_after == 20
    refusals = {
        "@everyone": (
            {**form, "trainer_role": str(alpha.id)},
            "@everyone can't be the trainer role",
        ),
        "foreign role": (
            {**form, "trainer_role": str(dash.trainer_role.id)},
            "not one of this server's roles",
        ),
        "threshold": ({**form, "low_confidence": "150"}, "low_confidence is a percentage"),
        "auto": ({**form, "auto_retrain": "-1"}, "Auto-retrain is a whole number"),
    }
    for why, (data, message) in refusals.items():
        _, _, page = await post(dash, http, url, data)
        assert message in flash_of(page), why
    assert (await scope.settings()).trainer_role_id == role.id  # nothing changed
    _, _, page = await post(dash, http, url, {"trainer_role": "", "auto_retrain": "0"})
    assert (await scope.settings()).trainer_role_id is None
    assert (await scope.settings()).include_default is False  # an unticked box


async def test_rules_are_set_listed_and_removed_through_the_commands_checks(dash, http):
    await log_in(dash, http, dash.alice)
    await upload(dash, http, "Alpha", [("a.jpg", flower_bytes("daisy"))], "daisy")
    url = dash.guild_url("Alpha", "/rules")
    _, _, page = await post(
        dash, http, url, {"label": "daisy", "action": "react", "threshold": "80", "emoji": "🌼"}
    )
    assert flash_of(page).startswith("New rule: daisy")
    log_channel = dash.channels["alpha-log"]
    _, _, page = await post(
        dash,
        http,
        url,
        {"label": "*", "action": "log", "threshold": "50", "log_channel": str(log_channel.id)},
    )
    assert "#log" in flash_of(page) and "<#" not in flash_of(page)
    for data, message in (
        ({"label": "orchid", "action": "reply", "threshold": "10"}, "doesn't know orchid"),
        ({"label": "daisy", "action": "explode", "threshold": "10"}, "The action is one of"),
        ({"label": "daisy", "action": "reply", "threshold": "abc"}, "number from 0 to 100"),
        (
            {
                "label": "daisy",
                "action": "log",
                "threshold": "10",
                "log_channel": str(dash.channels["charlie"].id),
            },
            "must be a channel of this server",
        ),
    ):
        _, _, page = await post(dash, http, url, data)
        assert message in flash_of(page), data
    _, page = await get(http, dash.guild_url("Alpha", "/settings"))
    assert page.count('aria-label="Remove the rule for') == 2
    _, _, page = await post(dash, http, url + "/remove", {"label": "daisy"})
    assert flash_of(page) == "Removed the rule for daisy."
    _, _, page = await post(dash, http, url + "/remove", {"label": "daisy"})
    assert "There is no rule for daisy" in flash_of(page)
    assert [r.label for r in await dash.store.guild(dash.guilds["Alpha"].id).rules()] == ["*"]


# --- metrics ----------------------------------------------------------------------------------
async def test_the_dashboards_requests_are_on_the_bots_metrics(tmp_path, http):
    from tests.bot.dashboard_world import free_port

    port = free_port()
    async with running_world(tmp_path, env={"HTTP_PORT": str(port)}) as dash:
        await log_in(dash, http, dash.alice)
        await get(http, dash.guild_url("Alpha", "/labels"))
        await get(http, dash.guild_url("Foxtrot", "/labels"))
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    route = 'route="/servers/{guild_id}/labels"'
    assert f'requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert f'requests_total{{method="GET",{route},status="404"}} 1.0' in text
