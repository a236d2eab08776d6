"""Uploads to the dashboard over real HTTP, served by the real bot's process: images into a
label and zips with a folder per label, by the page's script and by its plain form; and the
hostile ones: no CSRF token, oversized (declared and streamed), too many files, zip bombs,
path traversal, a non-image renamed .jpg, no label; the quota shared with /teach."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.bot.dashboard_client import (
    taught,
    token,
    upload,
)
from tests.bot.dashboard_world import log_in
from tests.bot.harness import flower_bytes, png_bytes
from tests.bot.images import TEXT_AS_PNG
from tests.bot.zips import mixed_zip, noisy_image, overlapping_zip


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
