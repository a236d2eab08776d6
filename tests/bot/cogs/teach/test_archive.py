"""bot/cogs/teach/_archive.py: zips of labelled images, honest and hostile (crafted bytes)."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from bot.cogs.teach._archive import (
    ArchiveLimits,
    ArchiveRefused,
    printable,
    read_label_archive,
)
from bot.core.settings import Settings

LIMITS = ArchiveLimits(
    max_archive_bytes=20_000_000,
    max_entries=100,
    max_entry_bytes=2_000_000,
    max_total_bytes=10_000_000,
    max_ratio=100.0,
)


def image(seed: int, fmt: str = "JPEG", side: int = 48) -> bytes:
    """A small noisy image: distinct per seed, and barely compressible."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = 8) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return out.getvalue()


def reasons(data: bytes, limits: ArchiveLimits = LIMITS) -> dict[str, str | None]:
    return {r.name: r.reason for r in read_label_archive(data, limits).report}


def patch_sizes(data: bytes, name: str, *, file_size: int) -> bytes:
    """Rewrite the uncompressed size of ``name`` in its local header and directory record."""
    raw = bytearray(data)
    encoded = name.encode()
    local = raw.find(b"PK\x03\x04")
    while local != -1:
        n = struct.unpack_from("<H", raw, local + 26)[0]
        if raw[local + 30 : local + 30 + n] == encoded:
            struct.pack_into("<I", raw, local + 22, file_size)
        local = raw.find(b"PK\x03\x04", local + 4)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + n] == encoded:
            struct.pack_into("<I", raw, central + 24, file_size)
        central = raw.find(b"PK\x01\x02", central + 4)
    return bytes(raw)


# --- honest archives ---------------------------------------------------------------------------
def test_a_folder_per_label_is_read_with_labels_normalised():
    cat1, cat2, dog = image(1), image(2, "PNG"), image(3)
    data = make_zip([("Cat/1.jpg", cat1), ("Cat/2.png", cat2), ("big dog/a.jpeg", dog)])
    contents = read_label_archive(data, LIMITS)
    assert [(i.label, i.name, i.data) for i in contents.images] == [
        ("cat", "Cat/1.jpg", cat1),
        ("cat", "Cat/2.png", cat2),
        ("big_dog", "big dog/a.jpeg", dog),
    ]
    assert all(r.accepted for r in contents.report) and not contents.refused


def test_one_folder_around_everything_is_ignored_and_folders_are_skipped():
    data = make_zip(
        [("photos/", b""), ("photos/cat/1.jpg", image(1)), ("photos/dog/1.jpg", image(2))]
    )
    contents = read_label_archive(data, LIMITS)
    assert [(i.label, i.name) for i in contents.images] == [
        ("cat", "photos/cat/1.jpg"),
        ("dog", "photos/dog/1.jpg"),
    ]
    assert len(contents.report) == 2  # the folder entry is not a line


def test_stored_entries_and_every_image_format_are_read():
    entries = [
        (f"x/{i}.{fmt}", image(i, fmt))
        for i, fmt in enumerate(["PNG", "GIF", "BMP", "TIFF", "WEBP"])
    ]
    contents = read_label_archive(make_zip(entries, zipfile.ZIP_STORED), LIMITS)
    assert len(contents.images) == 5 and not contents.refused


def test_limits_come_from_the_settings():
    settings = Settings(
        discord_token="t",
        archive_max_bytes=5000,
        archive_max_entries=7,
        archive_max_total_bytes=9000,
        archive_max_ratio=3,
        max_image_bytes=4096,
    )
    assert ArchiveLimits.from_settings(settings) == ArchiveLimits(5000, 7, 4096, 9000, 3.0)


# --- refusing the whole archive ------------------------------------------------------------------
def test_an_archive_over_the_size_limit_is_refused_unread():
    data = make_zip([("cat/1.jpg", image(1))])
    small = ArchiveLimits(len(data) - 1, 100, 2_000_000, 10_000_000, 100)
    with pytest.raises(ArchiveRefused, match="the limit is"):
        read_label_archive(data, small)


def test_too_many_entries_is_refused():
    data = make_zip([(f"cat/{i}.jpg", image(i, side=8)) for i in range(6)])
    few = ArchiveLimits(20_000_000, 5, 2_000_000, 10_000_000, 100)
    with pytest.raises(ArchiveRefused, match="6 entries; the limit is 5"):
        read_label_archive(data, few)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a zip at all" * 100,
        image(1),  # an image is not an archive
        gzip.compress(b"x" * 1000),
    ],
)
def test_not_a_zip_is_refused(data):
    with pytest.raises(ArchiveRefused, match="not a zip archive"):
        read_label_archive(data, LIMITS)


def test_a_truncated_archive_is_refused():
    data = make_zip([("cat/1.jpg", image(1)), ("cat/2.jpg", image(2))])
    with pytest.raises(ArchiveRefused, match="damaged"):
        read_label_archive(data[: len(data) // 2], LIMITS)


def test_overlapping_entries_are_refused_before_anything_is_read():
    """The "better zip bomb": several directory records pointing at one local file."""
    data = bytearray(make_zip([("cat/1.jpg", image(1)), ("cat/2.jpg", image(2))]))
    records = []
    at = data.find(b"PK\x01\x02")
    while at != -1:
        records.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, records[1] + 42, 0)  # the second record -> offset 0
    with pytest.raises(ArchiveRefused, match="overlap"):
        read_label_archive(bytes(data), LIMITS)


# --- zip bombs ------------------------------------------------------------------------------
def test_an_entry_that_compresses_too_well_is_refused_unread():
    bomb = b"\xff\xd8\xff" + b"\x00" * 1_500_000  # a JPEG signature, then zeros
    data = make_zip([("cat/bomb.jpg", bomb), ("cat/1.jpg", image(1))])
    assert len(data) < 10_000  # about 1:1000
    got = reasons(data)
    assert "zip bomb" in got["cat/bomb.jpg"] and got["cat/1.jpg"] is None


def test_a_header_that_understates_the_size_is_caught_while_streaming():
    """The directory says 1000 bytes; the data inflates to 1.5 MB. Reading stops at the
    declared size (the checksum then fails); the next entry's budget is untouched."""
    real = image(7, "BMP", side=700)  # ~1.5 MB, compresses poorly enough to pass the ratio
    data = make_zip([("cat/liar.bmp", real), ("cat/1.jpg", image(1))])
    data = patch_sizes(data, "cat/liar.bmp", file_size=1000)
    tight = ArchiveLimits(20_000_000, 100, 2_000_000, 1_100_000, 100_000)
    got = reasons(data, tight)
    assert "damaged" in got["cat/liar.bmp"] and got["cat/1.jpg"] is None


def test_a_header_that_overstates_the_size_is_refused():
    real = image(8)
    data = patch_sizes(make_zip([("cat/a.jpg", real)]), "cat/a.jpg", file_size=len(real) + 500)
    reason = reasons(data)["cat/a.jpg"]
    assert reason is not None and ("damaged" in reason or "differs" in reason)


def test_an_entry_declared_over_the_image_limit_is_refused_unread():
    big = image(9, "BMP", side=900)  # 2.4 MB of noise
    got = reasons(make_zip([("cat/big.bmp", big), ("cat/1.jpg", image(1))]))
    assert got["cat/big.bmp"].startswith("too large") and got["cat/1.jpg"] is None


def test_the_total_budget_stops_further_entries():
    images = [image(i, "BMP", side=380) for i in range(3)]  # ~433 KB each
    budget = ArchiveLimits(20_000_000, 100, 2_000_000, 1_000_000, 100)
    got = reasons(make_zip([(f"cat/{i}.bmp", d) for i, d in enumerate(images)]), budget)
    assert got["cat/0.bmp"] is None and got["cat/1.bmp"] is None
    assert got["cat/2.bmp"] == "over the archive's total size limit"


def test_refused_entries_count_against_the_total_budget():
    """A zip of one big image repeated cannot make the bot decompress without end: the
    copies, refused as duplicates, were decompressed too and count."""
    same = image(5, "BMP", side=380)  # ~433 KB
    budget = ArchiveLimits(20_000_000, 100, 2_000_000, 1_000_000, 100)
    got = reasons(make_zip([(f"cat/{i}.bmp", same) for i in range(4)]), budget)
    assert got["cat/0.bmp"] is None
    assert got["cat/1.bmp"] == "the same image as cat/0.bmp"
    assert got["cat/2.bmp"] == got["cat/3.bmp"] == "over the archive's total size limit"


def test_a_non_image_is_abandoned_after_its_first_bytes():
    """Non-images refused by their leading bytes leave the budget almost whole."""
    junk = [np.random.default_rng(i).bytes(400_000) for i in range(4)]
    entries = [(f"cat/{i}.jpg", d) for i, d in enumerate(junk)] + [
        ("cat/ok.bmp", image(1, "BMP", side=380))
    ]
    budget = ArchiveLimits(20_000_000, 100, 2_000_000, 1_000_000, 100)
    got = reasons(make_zip(entries), budget)
    assert all("not an image" in got[f"cat/{i}.jpg"] for i in range(4))
    assert got["cat/ok.bmp"] is None  # 1.6 MB of junk did not use up the 1 MB budget


# --- names that reach outside -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../cat/1.jpg",
        "cat/../../1.jpg",
        "/etc/cat/1.jpg",
        "C:/cat/1.jpg",
        "cat\\..\\1.jpg",
        "cat//1.jpg",
        "./cat/1.jpg",
    ],
)
def test_unsafe_names_are_refused(name):
    got = reasons(make_zip([(name, image(1)), ("dog/1.jpg", image(2))]))
    assert got[name].startswith("unsafe name") and got["dog/1.jpg"] is None


def test_a_nul_in_a_name_is_refused():
    data = make_zip([("cat/aXb.jpg", image(1)), ("dog/1.jpg", image(2))]).replace(b"aXb", b"a\x00b")
    contents = read_label_archive(data, LIMITS)
    assert [i.name for i in contents.images] == ["dog/1.jpg"]
    assert len(contents.refused) == 1


def test_a_symbolic_link_is_refused():
    link = zipfile.ZipInfo("cat/passwd.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    got = reasons(make_zip([(link, b"../../../../etc/passwd"), ("cat/1.jpg", image(1))]))
    assert got["cat/passwd.jpg"] == "a symbolic link" and got["cat/1.jpg"] is None


# --- smuggling --------------------------------------------------------------------------------
def test_a_non_image_renamed_jpg_is_refused_by_its_bytes():
    got = reasons(
        make_zip([("cat/notes.jpg", b"just some text, not a photo" * 40), ("cat/x.txt", image(1))])
    )
    assert "not an image" in got["cat/notes.jpg"]
    assert got["cat/x.txt"] is None  # an image, whatever its name


@pytest.mark.parametrize(
    ("inner", "kind"),
    [
        (make_zip([("cat/1.jpg", image(1))]), "zip"),
        (gzip.compress(image(2)), "gzip"),
        (b"\x00" * 257 + b"ustar\x0000" + b"\x00" * 300, "tar"),
        (b"7z\xbc\xaf\x27\x1c" + b"\x00" * 100, "7z"),
        (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 100, "rar"),
    ],
)
def test_archives_inside_the_archive_are_not_opened(inner, kind):
    got = reasons(make_zip([("cat/inner.jpg", inner)]))
    assert got["cat/inner.jpg"] == f"an archive inside the archive ({kind}); it was not opened"


def test_an_encrypted_entry_is_refused():
    data = bytearray(make_zip([("cat/secret.jpg", image(1)), ("cat/1.jpg", image(2))]))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the first entry
        at = data.find(signature)
        struct.pack_into("<H", data, at + flags_at, data[at + flags_at] | 0x1)
    got = reasons(bytes(data))
    assert got["cat/secret.jpg"].startswith("encrypted") and got["cat/1.jpg"] is None


def test_an_unknown_compression_method_is_refused():
    data = bytearray(make_zip([("cat/1.jpg", image(1)), ("dog/1.jpg", image(2))]))
    at = data.find(b"PK\x01\x02")  # the first directory record's method: 99 (AES)
    struct.pack_into("<H", data, at + 10, 99)
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<H", data, local + 8, 99)
    got = reasons(bytes(data))
    assert "method" in got["cat/1.jpg"] and got["dog/1.jpg"] is None


def test_a_corrupt_entry_is_refused_and_the_rest_kept():
    first = image(1, "BMP", side=100)
    data = bytearray(make_zip([("cat/1.bmp", first), ("cat/2.jpg", image(2))]))
    local = data.find(b"PK\x03\x04")
    start = local + 30 + len("cat/1.bmp")
    data[start + 50 : start + 60] = b"\x00" * 10  # inside the deflate stream
    got = reasons(bytes(data))
    assert "damaged" in got["cat/1.bmp"] and got["cat/2.jpg"] is None


def test_the_same_name_twice_is_refused():
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = make_zip([("cat/1.jpg", image(1)), ("cat/1.jpg", image(2)), ("Cat/1.JPG", image(3))])
    report = read_label_archive(data, LIMITS).report
    assert [r.reason for r in report] == [
        None,
        "the same name appears twice in this folder",
        "the same name appears twice in this folder",
    ]


def test_the_same_image_twice_is_refused_even_under_another_label():
    same = image(1)
    got = reasons(make_zip([("cat/1.jpg", same), ("dog/copy.jpg", same), ("cat/2.jpg", same)]))
    assert got["cat/1.jpg"] is None
    assert got["dog/copy.jpg"] == "the same image as cat/1.jpg"
    assert got["cat/2.jpg"] == "the same image as cat/1.jpg"


def test_hidden_and_system_files_are_refused_and_do_not_hide_the_wrapper():
    data = make_zip(
        [
            ("__MACOSX/photos/cat/._1.jpg", b"\x00\x05\x16\x07"),
            ("photos/cat/.DS_Store", b"\x00\x00\x00\x01Bud1"),
            ("photos/cat/1.jpg", image(1)),
        ]
    )
    got = reasons(data)
    assert got["__MACOSX/photos/cat/._1.jpg"] == "hidden or system file"
    assert got["photos/cat/.DS_Store"] == "hidden or system file"
    assert got["photos/cat/1.jpg"] is None


@pytest.mark.parametrize("name", ["1.jpg", "cat/sub/1.jpg"])
def test_images_outside_a_label_folder_are_refused(name):
    got = reasons(
        make_zip([(name, image(1)), ("dog/x/2.jpg", image(2)), ("a/b/c/3.jpg", image(3))])
    )
    assert got[name] == "not in a label folder: use <label>/<image>"


def test_folder_names_that_are_not_labels_are_refused_with_the_label_rules():
    got = reasons(
        make_zip([("unknown/1.jpg", image(1)), ("c@t!/2.jpg", image(2)), ("ok/3.jpg", image(3))])
    )
    assert "reserved" in got["unknown/1.jpg"]
    assert "not a valid label" in got["c@t!/2.jpg"]
    assert got["ok/3.jpg"] is None


def test_an_empty_entry_is_refused():
    assert reasons(make_zip([("cat/empty.jpg", b"")]))["cat/empty.jpg"] == "empty"


def test_names_are_made_printable_for_the_report():
    name = "cat/\u202egpj.exe\x07.jpg"
    report = read_label_archive(make_zip([(name, image(1))]), LIMITS).report
    assert report[0].name == "cat/?gpj.exe?.jpg"
    assert printable("x" * 500).endswith("...") and len(printable("x" * 500)) == 200


def test_the_crc_of_what_is_accepted_matches():
    data = make_zip([("cat/1.jpg", image(1))])
    [accepted] = read_label_archive(data, LIMITS).images
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zlib.crc32(accepted.data) == zf.getinfo("cat/1.jpg").CRC
