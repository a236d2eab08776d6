"""Reading a zip of labelled images (a folder per label), without trusting anything in it.

``read_label_archive(data, limits)`` returns the images it accepts as ``(label, name,
bytes)`` and one report line per entry, with the reason for each refusal. It is
synchronous and CPU-bound (decompression): callers run it in a thread.

What an archive cannot do:
- be too large, list too many entries, be corrupt or not a zip at all, or have entries
  whose data overlap (the "overlapping files" zip bomb): the whole archive is refused
  (:class:`ArchiveRefused`, with the message the user sees);
- make us decompress more than it may: each entry is streamed with a cap (one image's
  limit, and what is left of the archive's total), whatever its header declares; an entry
  whose declared compression ratio, declared size or actual size is over the limits, or
  whose actual size differs from its header, is refused;
- reach outside its folders: absolute names, ``..``, drive letters, backslashes and NUL,
  symbolic links;
- smuggle: encrypted entries, archives inside the archive, non-images (sniffed from the
  bytes, never the extension), hidden and system files (``.DS_Store``, ``__MACOSX``), the
  same name twice and the same image twice are refused with their reason.

The label is the folder the image is in, normalised by the project's label rules; a single
folder around everything (``photos/cat/1.jpg``) is allowed and ignored.
"""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.cogs.teach._labels import normalize_label
from bot.core.errors import UserError
from golem_backend import sniff_format

if TYPE_CHECKING:
    from bot.core.settings import Settings

CHUNK = 64 * 1024
SNIFF_BYTES = 512  # enough for every image and archive signature below
#: leading bytes of archives and compressed files, by name (a tar's mark is at 257)
ARCHIVE_SIGNATURES = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
SYSTEM_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})


class ArchiveRefused(UserError):
    """The whole archive is refused; the message says why."""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_archive_bytes: int  # the zip file itself
    max_entries: int  # entries its directory may list (folders included)
    max_entry_bytes: int  # one image, decompressed
    max_total_bytes: int  # everything decompressed from one archive
    max_ratio: float  # decompressed / compressed size of one entry

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(
            max_archive_bytes=settings.archive_max_bytes,
            max_entries=settings.archive_max_entries,
            max_entry_bytes=settings.max_image_bytes,
            max_total_bytes=settings.archive_max_total_bytes,
            max_ratio=settings.archive_max_ratio,
        )


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    label: str  # normalised
    name: str  # the entry's path in the archive (printable)
    data: bytes


#: What kind of refusal an entry's is (for the counts of a report).
DUPLICATE, NOT_IMAGE, REFUSED = "duplicate", "not_image", "refused"


@dataclass(frozen=True, slots=True)
class EntryReport:
    name: str  # the entry's path in the archive (printable)
    label: str | None  # normalised, when the entry had a valid label folder
    reason: str | None  # None: accepted
    kind: str = REFUSED  # for a refused entry: DUPLICATE, NOT_IMAGE or REFUSED

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class ArchiveContents:
    images: list[ArchiveImage]
    report: list[EntryReport]

    @property
    def refused(self) -> list[EntryReport]:
        return [r for r in self.report if not r.accepted]


class _Refused(Exception):
    """One entry refused (internal: becomes its report line)."""

    def __init__(self, reason: str, kind: str = REFUSED) -> None:
        super().__init__(reason)
        self.kind = kind


def printable(name: str, limit: int = 200) -> str:
    """``name`` safe to show: control and bidirectional-override characters as ``?``."""
    cleaned = "".join(
        "?" if (ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0x202A <= ord(c) <= 0x202E) else c
        for c in name
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def size_text(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} KB"


def read_label_archive(data: bytes, limits: ArchiveLimits) -> ArchiveContents:
    """The images of a zip laid out as ``<label>/<image>``, and a report line per entry."""
    if len(data) > limits.max_archive_bytes:
        raise ArchiveRefused(
            f"That archive is {size_text(len(data))}; the limit is "
            f"{size_text(limits.max_archive_bytes)}."
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise ArchiveRefused("That file is not a zip archive, or it is damaged.") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise ArchiveRefused(
                f"That archive lists {len(entries)} entries; the limit is {limits.max_entries}."
            )
        _refuse_overlaps(entries, len(data))
        return _Reader(archive, limits).read(entries)


def _refuse_overlaps(entries: Sequence[zipfile.ZipInfo], size: int) -> None:
    """Entries whose compressed data overlap, or lie past the end, are a crafted archive."""
    files = sorted((e for e in entries if not e.is_dir()), key=lambda e: e.header_offset)
    for entry, following in zip(files, [*files[1:], None], strict=True):
        end = entry.header_offset + 30 + entry.compress_size  # 30: the local header's fixed part
        limit = following.header_offset if following is not None else size
        if entry.header_offset < 0 or end > limit:
            raise ArchiveRefused(
                "That archive is malformed: its entries overlap or run past its end "
                "(a zip bomb?). Nothing was read."
            )


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, limits: ArchiveLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.budget = limits.max_total_bytes  # bytes we may still decompress
        self.names: set[tuple[str, str]] = set()
        self.digests: dict[str, str] = {}  # sha256 -> the first entry with that content

    def read(self, entries: Sequence[zipfile.ZipInfo]) -> ArchiveContents:
        files = [e for e in entries if not e.is_dir()]
        # zipfile cuts a name at NUL; the name as stored (orig_filename) is what is checked
        paths = {id(e): _path_parts(e.orig_filename) for e in files}
        wrapper = _common_folder([p for p in paths.values() if p is not None and not _junk(p)])
        images: list[ArchiveImage] = []
        report: list[EntryReport] = []
        for entry in files:
            name = printable(entry.filename)
            parts = paths[id(entry)]
            label: str | None = None
            try:
                if parts is None:
                    raise _Refused("unsafe name (absolute, '..', a drive or a backslash)")
                if _junk(parts):
                    raise _Refused("hidden or system file")
                if wrapper is not None:
                    parts = parts[1:]
                if len(parts) != 2:
                    raise _Refused("not in a label folder: use <label>/<image>")
                try:
                    label = normalize_label(parts[0])
                except UserError as exc:
                    raise _Refused(exc.message) from None
                key = (label, parts[1].lower())
                if key in self.names:
                    raise _Refused("the same name appears twice in this folder", DUPLICATE)
                self.names.add(key)
                content = self._content(entry)
                digest = hashlib.sha256(content).hexdigest()
                if digest in self.digests:
                    raise _Refused(f"the same image as {self.digests[digest]}", DUPLICATE)
                self.digests[digest] = name
            except _Refused as refusal:
                report.append(EntryReport(name, label, str(refusal), refusal.kind))
                continue
            images.append(ArchiveImage(label, name, content))
            report.append(EntryReport(name, label, None))
        return ArchiveContents(images, report)

    def _content(self, entry: zipfile.ZipInfo) -> bytes:
        """The entry's bytes, streamed under the caps; :class:`_Refused` otherwise."""
        limits = self.limits
        mode = entry.external_attr >> 16
        if entry.create_system == 3 and stat.S_ISLNK(mode):
            raise _Refused("a symbolic link")
        if entry.flag_bits & 0x41:  # 0x01 encrypted, 0x40 strong encryption
            raise _Refused("encrypted (password-protected)")
        if entry.file_size > limits.max_entry_bytes:
            raise _Refused(
                f"too large ({size_text(entry.file_size)}; the limit is "
                f"{size_text(limits.max_entry_bytes)})"
            )
        if entry.file_size > limits.max_ratio * max(entry.compress_size, 1):
            raise _Refused("compressed suspiciously well (a zip bomb?)")
        if self.budget <= 0:
            raise _Refused("over the archive's total size limit")
        cap = min(limits.max_entry_bytes, self.budget)
        data = bytearray()
        sniffed = False
        try:
            with self.archive.open(entry) as stream:
                while chunk := stream.read(min(CHUNK, cap + 1 - len(data))):
                    data.extend(chunk)
                    if not sniffed and len(data) >= SNIFF_BYTES:
                        sniffed = True
                        _sniff(bytes(data[:SNIFF_BYTES]))  # before reading the rest
                    if len(data) > cap:
                        break
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
            raise _Refused(f"damaged ({_damage(exc)})", NOT_IMAGE) from None
        except NotImplementedError:
            raise _Refused("compressed with a method this bot does not read") from None
        except RuntimeError:  # zipfile: "File ... is encrypted, password required"
            raise _Refused("encrypted (password-protected)") from None
        finally:
            self.budget -= len(data)
        if len(data) > cap:
            if cap < limits.max_entry_bytes:
                raise _Refused("over the archive's total size limit")
            raise _Refused(f"too large (over {size_text(limits.max_entry_bytes)})")
        if len(data) != entry.file_size:
            raise _Refused("its size differs from what the archive declares (a zip bomb?)")
        if not sniffed:
            _sniff(bytes(data))
        return bytes(data)


def _sniff(head: bytes) -> None:
    """Refuse what the leading bytes say is not an image (archives named first)."""
    for signature, kind in ARCHIVE_SIGNATURES:
        if head.startswith(signature):
            raise _Refused(f"an archive inside the archive ({kind}); it was not opened", NOT_IMAGE)
    if head[257:262] == b"ustar":
        raise _Refused("an archive inside the archive (tar); it was not opened", NOT_IMAGE)
    if not head:
        raise _Refused("empty", NOT_IMAGE)
    if sniff_format(head) is None:
        raise _Refused(
            "not an image (JPEG, PNG, GIF, WebP, BMP or TIFF), whatever its name", NOT_IMAGE
        )


def _damage(exc: BaseException) -> str:
    text = str(exc)
    return "bad checksum" if "CRC" in text else "could not be decompressed"


def _path_parts(filename: str) -> list[str] | None:
    """The path's folders and name, or ``None`` if it could leave the archive's folder."""
    if "\\" in filename or "\x00" in filename or filename.startswith("/"):
        return None
    parts = filename.split("/")
    if any(p in ("", ".", "..") for p in parts) or (len(parts[0]) >= 2 and parts[0][1] == ":"):
        return None
    return parts


def _junk(parts: list[str]) -> bool:
    return any(p.startswith(".") or p.lower() in SYSTEM_NAMES for p in parts)


def _common_folder(paths: list[list[str]]) -> str | None:
    """The one folder every image is in, when every path is ``<folder>/<label>/<name>``."""
    if not paths or any(len(p) != 3 for p in paths):
        return None
    tops = {p[0] for p in paths}
    return tops.pop() if len(tops) == 1 else None
