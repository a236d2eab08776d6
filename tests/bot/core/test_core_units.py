"""Unit tests of the core's pure parts: settings parsing, downloads, the training view,
Discord's size limits, log redaction and pages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import discord
import pytest
from pydantic import ValidationError

from bot.cogs.classify._answers import prediction_embed
from bot.core.discord_limits import EMBED_TOTAL_MAX, fit_embeds
from bot.core.download import (
    check_url,
    download,
    image_extension,
    sniff_image,
    too_large_message,
)
from bot.core.errors import DownloadError, UserError
from bot.core.logconfig import REDACTED, RedactingFormatter
from bot.core.training_sets import build_default_dataset, server_training_set
from bot.db import TaughtRecord
from golem_backend import Example, LabelScore, Prediction
from tests.bot.harness import settings_from_env


def test_settings_parse_comma_separated_lists():
    s = settings_from_env(
        {
            "DISCORD_TOKEN": "a.b.c",
            "ADMIN_USER_IDS": "1, 2;3",
            "DISCORD_CDN_HOSTS": "Files.Example.org, cdn.local.",
            "AUTOCLASSIFY_CHANNEL_IDS": "42",
            "LOG_LEVEL": "debug",
        }
    )
    assert s.admin_user_ids == [1, 2, 3]
    assert s.autoclassify_channel_ids == [42]
    assert s.discord_cdn_hosts == ["files.example.org", "cdn.local"]
    assert {"cdn.discordapp.com", "media.discordapp.net", "cdn.local"} <= s.attachment_hosts
    assert s.log_level == "DEBUG"
    assert "a.b.c" not in repr(s) and "a.b.c" not in str(s.model_dump())


def test_every_secret_is_redacted_including_the_app_key_file_and_the_db_password(tmp_path):
    import logging

    keyfile = tmp_path / "appkey"
    keyfile.write_text("filekey123\nsecond line is not the key\n")
    s = settings_from_env(
        {
            "DISCORD_TOKEN": "tok.en.x",
            "YAGNA_APPKEY_FILE": str(keyfile),
            "DATABASE_URL": "postgresql+asyncpg://bot:p%40ss@db.example/bot",
            "DISCORD_CLIENT_ID": "123",
            "DISCORD_CLIENT_SECRET": "client-secret-xyz",
            "DASHBOARD_SESSION_SECRET": "s" * 40,
        }
    )
    secrets = s.secret_values()
    assert {"tok.en.x", "filekey123", "p%40ss", "p@ss", "client-secret-xyz", "s" * 40} <= set(
        secrets
    )
    fmt = RedactingFormatter("%(message)s", secrets)
    line = "filekey123 p@ss client-secret-xyz tok.en.x"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, line, (), None)
    assert fmt.format(record) == " ".join([REDACTED] * 4)
    keyfile.unlink()  # compose writes the key at yagna's first start: missing is fine
    assert "filekey123" not in s.secret_values()


def test_settings_defaults():
    s = settings_from_env({"DISCORD_TOKEN": "Bot a.b.c"})
    assert s.discord_token.get_secret_value() == "a.b.c"
    assert s.discord_api_base == "https://discord.com/api/v10"
    assert s.discord_gateway_url == "wss://gateway.discord.gg/"
    assert not s.message_content_intent and s.admin_user_ids == [] and s.dev_guild_id is None


@pytest.mark.parametrize(
    "env",
    [
        {"DISCORD_CDN_HOSTS": "https://x.org"},
        {"ADMIN_USER_IDS": "bob"},
        {"DISCORD_API_BASE": "discord.com"},
        {"MAX_IMAGES_PER_MESSAGE": "11"},
        {"DISCORD_TOKEN": "has space"},
    ],
)
def test_settings_reject_bad_values(env):
    with pytest.raises(ValidationError):
        settings_from_env({"DISCORD_TOKEN": "a.b.c", **env})


def test_url_check_accepts_only_cdn_hosts():
    hosts = {"cdn.discordapp.com"}
    assert check_url("https://cdn.discordapp.com/attachments/1/2/a.png?ex=1", hosts).host
    for url in (
        "https://evil.com/a.png",
        "ftp://cdn.discordapp.com/a",
        "file:///etc/passwd",
        "https://cdn.discordapp.com.evil.com/a.png",
        "https://user@evil.com/x",
    ):
        with pytest.raises(DownloadError):
            check_url(url, hosts)


def test_sniff_image():
    assert sniff_image(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "jpeg"
    assert sniff_image(b"\x89PNG\r\n\x1a\n\x00\x00") == "png"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBP") == "webp"
    assert sniff_image(b"GIF89a") == "gif"
    assert sniff_image(b"<html>") is None and sniff_image(b"") is None


def _record(path: Path, label: str) -> TaughtRecord:
    return TaughtRecord(label, path.stem, 7, "u", dt.datetime.now(dt.UTC), path, 1)


def test_default_training_view_merges_recorded_images_only(tmp_path: Path):
    base = tmp_path / "base"
    for label in ("daisy", "tulip"):
        (base / label).mkdir(parents=True)
        (base / label / "1.jpg").write_bytes(b"\xff\xd8\xff" + label.encode())
    (base / "README.md").write_text("not a label")
    s = settings_from_env(
        {"DISCORD_TOKEN": "a.b.c", "DATA_DIR": str(tmp_path / "data"), "DATASET_DIR": str(base)}
    )
    assert build_default_dataset(s, []) == base  # nothing taught yet
    taught = tmp_path / "data" / "guilds" / "default" / "images"
    taught.mkdir(parents=True)
    rose, daisy = taught / ("a" * 64 + ".jpg"), taught / ("b" * 64 + ".jpg")
    rose.write_bytes(b"\xff\xd8\xff\xe0taught")
    daisy.write_bytes(b"\xff\xd8\xff\xe0taught2")
    (taught / ("c" * 64 + ".jpg")).write_bytes(b"\xff\xd8\xff no record names me")
    (taught / ".x.jpg.k2j4.tmp").write_bytes(b"half-written")
    view = build_default_dataset(s, [_record(rose, "rose"), _record(daisy, "daisy")])
    files = sorted(str(p.relative_to(view)) for p in view.rglob("*") if p.is_file())
    assert files == [
        "daisy/1.jpg",
        f"daisy/taught-{daisy.name}",
        f"rose/taught-{rose.name}",
        "tulip/1.jpg",
    ]
    again = build_default_dataset(s, [_record(rose, "rose")])  # rebuilt, no leftovers
    assert again == view and not (view / "daisy" / f"taught-{daisy.name}").exists()
    assert [p.name for p in (tmp_path / "data").iterdir() if "training-view" in p.name] == [
        "training-view"
    ]


def test_server_training_set_lists_exactly_the_records(tmp_path: Path):
    recs = [_record(tmp_path / "x.jpg", "rose")]
    ts = server_training_set(tmp_path / "models", recs, include_default=False)
    assert ts.examples == (Example(tmp_path / "x.jpg", "rose"),) and not ts.include_default
    with pytest.raises(UserError, match="nothing to train on"):
        server_training_set(tmp_path / "models", [], include_default=False)


def test_image_extension_refuses_what_is_not_an_image():
    assert image_extension(b"\xff\xd8\xff\xe0x") == "jpg"
    with pytest.raises(UserError, match="not an image"):
        image_extension(b"not an image")


def test_redacting_formatter():
    import logging

    fmt = RedactingFormatter("%(message)s", ["s3cr3t"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("s3cr3t",), None)
    assert fmt.format(record) == f"token={REDACTED}"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (1024 * 1024, "1 MB"),
        (1536 * 1024, "1.5 MB"),
        (1280 * 1024, "1.25 MB"),
        (10 * 1024 * 1024, "10 MB"),
        (512 * 1024, "512 KB"),
        (1536, "1.5 KB"),
        (900, "900 bytes"),
    ],
)
def test_size_limits_are_shown_exactly(limit: int, expected: str):
    assert too_large_message(limit) == f"That file is too large (the limit is {expected})."


def test_fit_embeds_keeps_ten_big_answers_within_discord_limits():
    labels = [f"label_{i:02d}_" + "x_" * 12 for i in range(10)]  # 32 characters, escaped "_"
    top = tuple(LabelScore(label, 0.1) for label in labels)
    pred = Prediction(labels[0], 0.1, top, "model-" + "m" * 40)
    embeds = [
        prediction_embed(pred, filename="f" * 300, thumbnail_url=None, low_confidence=0.5)
        for _ in range(10)
    ]
    assert sum(len(e) for e in embeds) > EMBED_TOTAL_MAX
    fitted = fit_embeds(embeds)
    assert sum(len(e) for e in fitted) <= EMBED_TOTAL_MAX
    for e in fitted:
        assert len(e.author.name or "") <= 256 and e.title and labels[0] in e.title
        assert e.fields[0].value and labels[0].replace("_", "\\_") in e.fields[0].value
    big = discord.Embed(title="t" * 300, description="d" * 5000)
    big.add_field(name="n", value="v" * 2000)
    big = fit_embeds([big])[0]
    assert len(big.title or "") == 256 and len(big.description or "") <= 4096
    assert len(big.fields[0].value or "") <= 1024 and len(big) <= EMBED_TOTAL_MAX


async def test_download_on_a_closed_session_is_a_download_error():
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(DownloadError, match="restarting"):
        await download(
            session,
            "https://cdn.discordapp.com/attachments/1/2/a.png",
            allowed_hosts={"cdn.discordapp.com"},
            max_bytes=1024,
            timeout_s=5,
        )


def test_simulator_counts_embed_author_names_like_discord():
    from tests.discord_sim.validation import DiscordError, validate_message

    with pytest.raises(DiscordError) as info:
        validate_message({"embeds": [{"author": {"name": "a" * 257}}]}, 0)
    assert info.value.code == 50035
    embeds = [{"description": "d" * 400, "author": {"name": "a" * 250}} for _ in range(10)]
    with pytest.raises(DiscordError, match="Invalid Form Body"):
        validate_message({"embeds": embeds}, 0)  # 4,000 characters without the authors


def test_text_pages_pack_lines_without_splitting_them():
    from bot.core.paged_views import text_pages

    assert text_pages([]) == [""]
    assert text_pages(["a", "b"], max_chars=3) == ["a\nb"]
    assert text_pages(["aa", "bb", "c"], max_chars=4) == ["aa", "bb\nc"]
    long = text_pages(["x" * 10, "y"], max_chars=5)
    assert len(long) == 2 and len(long[0]) == 5 and long[1] == "y"  # clipped, not split
    pages = text_pages([f"line {i:04d}" for i in range(1000)], max_chars=4096)
    assert all(len(page) <= 4096 for page in pages)
    assert "\n".join(pages).splitlines() == [f"line {i:04d}" for i in range(1000)]
