"""The dashboard's per-server pages over real HTTP, served by the real bot's process: labels,
images, uploads, the review grid, models, retrain, rollback, settings and rules; each one
checked against the server in the URL and the member's role, and hostile requests (no
CSRF token, another server's ids, a member without the role, oversized uploads, zip
bombs, path traversal, a non-image renamed .jpg)."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.bot.dashboard_world import (
    DashboardWorld,
    csrf_token_of,
    http_client,
    log_in,
    running_world,
)
from tests.bot.harness import flower_bytes, png_bytes
from tests.bot.images import TEXT_AS_PNG
from tests.bot.tenancy_world import poll
from tests.bot.zips import mixed_zip, noisy_image, overlapping_zip


@pytest_asyncio.fixture
async def dash(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[DashboardWorld]:
    async with running_world(tmp_path, env=getattr(request, "param", {})) as world:
        yield world


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text(errors="replace")


async def token(dash: DashboardWorld, http: aiohttp.ClientSession) -> str:
    return csrf_token_of((await get(http, dash.url + "/servers"))[1])


async def post(
    dash: DashboardWorld,
    http: aiohttp.ClientSession,
    url: str,
    data: dict[str, str] | None = None,
    *,
    csrf: str | None = "",
) -> tuple[int, str, str]:
    """A form POST as the browser sends it; (status, Location, the page it leads to)."""
    form = dict(data or {})
    if csrf is not None:
        form["csrf_token"] = csrf or await token(dash, http)
    async with http.post(
        url, data=form, headers={"Origin": dash.url}, allow_redirects=False
    ) as resp:
        status, location, body = resp.status, resp.headers.get("Location", ""), await resp.text()
    if status == 302 and location:
        _, body = await get(http, dash.config.origin + location)
    return status, location, body


def flash_of(page: str) -> str:
    found = re.search(r'<p class="flash [a-z]+" role="\w+">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else ""


async def upload(
    dash: DashboardWorld,
    http: aiohttp.ClientSession,
    server: str,
    files: list[tuple[str, bytes]],
    label: str = "",
    *,
    as_json: bool = True,
    csrf: str | None = "",
) -> tuple[int, Any]:
    """The upload as the page's script sends it (CSRF header, JSON answer), or as the form
    does (``as_json=False``: the field first, the report page back)."""
    form = aiohttp.FormData()
    headers = {"Origin": dash.url}
    secret = csrf if csrf is None else (csrf or await token(dash, http))
    if as_json:
        headers["Accept"] = "application/json"
        if secret is not None:
            headers["X-CSRF-Token"] = secret
    elif secret is not None:
        form.add_field("csrf_token", secret)
    form.add_field("label", label)
    for name, data in files:
        form.add_field("files", data, filename=name, content_type="image/jpeg")
    async with http.post(
        dash.guild_url(server, "/upload"), data=form, headers=headers, allow_redirects=False
    ) as resp:
        if as_json and resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def taught(dash: DashboardWorld, server: str) -> dict[str, int]:
    return await dash.store.guild(dash.guilds[server].id).label_counts()


# --- uploads ------------------------------------------------------------------------------
async def test_images_uploaded_into_a_label_are_verified_and_taught(dash, http):
    await log_in(dash, http, dash.alice)
    files = [
        ("a.jpg", flower_bytes("daisy", 0)),
        ("b.jpg", flower_bytes("daisy", 1)),
        ("again.jpg", flower_bytes("daisy", 0)),
        ("diary.jpg", TEXT_AS_PNG),  # not an image, whatever its name
        ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 200),  # a JPEG's start, then nothing
    ]
    status, body = await upload(dash, http, "Alpha", files, "Daisy")
    assert status == 200, body
    kinds = {e["name"]: e["kind"] for e in body["entries"]}
    assert kinds == {
        "a.jpg": "learned",
        "b.jpg": "learned",
        "again.jpg": "duplicate",
        "diary.jpg": "not_image",
        "broken.jpg": "not_image",
    }
    assert body["learned"] == 2 and "Learned 2 of 5 image(s) (daisy 2)" in body["summary"]
    assert await taught(dash, "Alpha") == {"daisy": 2}
    assert dash.backend.requests and all(
        t == f"guild:{dash.guilds['Alpha'].id}" for _, t in dash.backend.requests
    )
    records = await dash.store.guild(dash.guilds["Alpha"].id).taught()
    assert {r.user_id for r in records} == {dash.alice.id}  # taught as the member


async def test_a_zip_teaches_its_folders_with_a_report_per_entry(dash, http):
    await log_in(dash, http, dash.alice)
    status, body = await upload(dash, http, "Alpha", [("photos.zip", mixed_zip())])
    assert status == 200
    by_name = {e["name"]: e for e in body["entries"]}
    assert by_name["daisy/1.jpg"]["kind"] == "learned"
    assert by_name["tulip/again.jpg"]["kind"] == "duplicate"
    assert by_name["tulip/diary.jpg"]["kind"] == "not_image"
    assert "archive inside the archive" in by_name["tulip/inner.jpg"]["text"]
    assert "zip bomb" in by_name["tulip/bomb.jpg"]["text"]
    assert "unsafe name" in by_name["../escape/1.jpg"]["text"]
    assert await taught(dash, "Alpha") == {"daisy": 2, "tulip": 1}
    assert not [p for p in dash.settings.data_dir.rglob("*") if "escape" in p.name]


async def test_the_form_without_the_script_answers_with_the_report_page(dash, http):
    await log_in(dash, http, dash.alice)
    files = [("a.jpg", flower_bytes("tulip", 0)), ("b.png", png_bytes())]
    status, page = await upload(dash, http, "Alpha", files, "tulip", as_json=False)
    assert status == 200
    assert "Learned 2 of 2 image(s) (tulip 2)" in page and "<strong>b.png</strong>" in page


async def test_a_zip_bomb_of_overlapping_entries_is_refused_whole(dash, http):
    await log_in(dash, http, dash.alice)
    status, body = await upload(dash, http, "Alpha", [("bomb.zip", overlapping_zip())])
    assert status == 200
    [entry] = body["entries"]
    assert entry["kind"] == "refused" and "overlap" in entry["text"]
    assert await taught(dash, "Alpha") == {}


async def test_images_without_a_label_are_refused_with_the_label_rules(dash, http):
    await log_in(dash, http, dash.alice)
    for label in ("", "../etc", "a" * 40, "unknown"):
        _, body = await upload(dash, http, "Alpha", [("a.jpg", flower_bytes("daisy"))], label)
        [entry] = body["entries"]
        assert entry["kind"] == "refused" and "Choose a label" in entry["text"], label
    assert await taught(dash, "Alpha") == {}


@pytest.mark.parametrize(
    "dash", [{"ARCHIVE_MAX_BYTES": "300000", "ARCHIVE_MAX_ENTRIES": "5"}], indirect=True
)
async def test_oversized_uploads_are_refused_before_anything_is_taught(dash, http):
    await log_in(dash, http, dash.alice)
    big = noisy_image(1, "BMP", side=400)  # ~480 KB: over the whole request's limit
    status, body = await upload(dash, http, "Alpha", [("big.bmp", big)], "daisy")
    assert status == 413 and "the most one upload may hold" in body["error"]
    many = [(f"{i}.jpg", noisy_image(i)) for i in range(6)]
    status, body = await upload(dash, http, "Alpha", many, "daisy")
    assert status == 413 and "At most 5 files" in body["error"]

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'--b\r\nContent-Disposition: form-data; name="label"\r\n\r\ndaisy\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.jpg"\r\n\r\n'
        for _ in range(100):
            yield b"\xff" * 10_000

    headers = {
        "Origin": dash.url,
        "X-CSRF-Token": await token(dash, http),
        "Content-Type": "multipart/form-data; boundary=b",
        "Accept": "application/json",
    }
    async with http.post(dash.guild_url("Alpha", "/upload"), data=endless(), headers=headers) as r:
        assert r.status == 413
    assert await taught(dash, "Alpha") == {}


async def test_a_declared_length_over_the_limit_is_refused_unread(dash, http):
    await log_in(dash, http, dash.alice)
    limit = dash.settings.archive_max_bytes + 64 * 1024
    headers = {
        "Origin": dash.url,
        "X-CSRF-Token": await token(dash, http),
        "Content-Type": "multipart/form-data; boundary=b",
        "Content-Length": str(limit + 1),
    }
    reader, writer = await asyncio.open_connection("127.0.0.1", dash.cog.port)
    path = f"/servers/{dash.guilds['Alpha'].id}/upload"
    cookies = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\n{head}\r\n".encode())
    await writer.drain()  # no body sent at all: the answer comes from the header alone
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert b" 413 " in status_line


# --- who may do what ----------------------------------------------------------------------
async def test_an_upload_without_the_csrf_token_is_refused(dash, http):
    await log_in(dash, http, dash.alice)
    for as_json in (True, False):
        status, _ = await upload(
            dash,
            http,
            "Alpha",
            [("a.jpg", flower_bytes("daisy"))],
            "daisy",
            as_json=as_json,
            csrf=None,
        )
        assert status == 403
    status, _ = await upload(
        dash, http, "Alpha", [("a.jpg", flower_bytes("daisy"))], "daisy", csrf="forged"
    )
    assert status == 403
    assert await taught(dash, "Alpha") == {}


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
async def queue_correction(
    dash: DashboardWorld, server: str, label: str, colour: str = "red"
) -> int:
    """A member's correction waiting in ``server``'s queue (as "Wrong..." leaves one)."""
    scope = dash.store.guild(dash.guilds[server].id)
    answer_id = await scope.record_answer(
        channel_id=1,
        user_id=dash.carol.id,
        model_id="scripted-1",
        label="daisy",
        confidence=0.9,
        data=png_bytes((48, 48), colour),
        extension="png",
    )
    record = await scope.answer(answer_id)
    assert record is not None
    await scope.enqueue_review(record, label, user_id=dash.carol.id, user_name="carol")
    return (await scope.review_items(100))[-1].item_id


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


@pytest.mark.parametrize("dash", [{"GUILD_MAX_TAUGHT_IMAGES": "3"}], indirect=True)
async def test_discord_and_the_dashboard_share_the_teaching_quota(dash, http):
    alpha, chan = dash.guilds["Alpha"], dash.channels["alpha"]
    for i in range(2):
        att = dash.sim.upload(flower_bytes("daisy", i), f"{i}.jpg")
        ix = await dash.sim.slash(
            dash.app, chan, dash.alice, "teach images", {"label": "daisy", "image": att}
        )
        await dash.sim.wait_response(ix)
    assert await taught(dash, "Alpha") == {"daisy": 2}
    await log_in(dash, http, dash.alice)
    files = [(f"{i}.jpg", flower_bytes("daisy", i)) for i in range(2, 5)]
    _, body = await upload(dash, http, "Alpha", files, "daisy")
    assert [e["kind"] for e in body["entries"]] == ["learned", "over_quota", "over_quota"]
    assert "3" in body["entries"][1]["text"]  # the quota's message names its limit
    assert await dash.store.guild(alpha.id).label_counts() == {"daisy": 3}


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
