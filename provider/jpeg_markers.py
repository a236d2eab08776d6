"""A cheap structural check of a JPEG's markers, before any pixel is decoded.

A progressive JPEG is a sequence of scans; each scan makes the decoder walk every block of
the components it covers, however few bytes the scan itself takes. One scan repeated
thousands of times therefore makes a small file that is very slow to decode (a *scan
bomb*: 441 KB, 10,000 scans of a 6000x6000 image took 9.9 s). Pillow hands the whole file
to libjpeg, which has no scan limit, so :func:`check_jpeg_markers` counts the scans from
the markers (a regular-expression walk over the entropy-coded data, ~10 ms for 20 MB)
and rejects absurd files before libjpeg sees them.

Why :data:`MAX_SCANS` is 100: libjpeg's own progressive script
(``jpeg_simple_progression``) writes 10 scans for a colour image and 2 + 4 x 4 = 18 for
CMYK; mozjpeg's scan optimisation and jpegrescan pick scripts of about 10-20 scans; a
baseline (sequential) file has one scan per component at most (<= 4 in practice). 100 is
five times the most any of them writes. A scan of a 40-megapixel image (the pixel limit)
costs libjpeg about 1.5-4 ms here, so 100 of them add at most ~0.4 s to a decode.

Other marker abuse rejected here, each for something no encoder writes:

* more than one frame header (SOF): hierarchical JPEG, which libjpeg cannot decode anyway;
* more than :data:`MAX_SEGMENTS` marker segments (a file of millions of tiny comment
  segments makes Pillow's own marker parser, which is Python, run for seconds);
* a segment length below 2 (libjpeg would stop with "bogus marker length").

What is *not* judged here: truncation (no EOI), garbage between markers, unknown markers:
libjpeg and Pillow decide those, as they would without this check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provider.errors import CorruptImage, ImageTooComplex

__all__ = ["MAX_SCANS", "MAX_SEGMENTS", "JpegStructure", "check_jpeg_markers"]

MAX_SCANS: Final = 100
"""Most start-of-scan (SOS) markers accepted in one JPEG; see the module docstring."""

MAX_SEGMENTS: Final = 1000
"""Most marker segments (other than scans) accepted: real files have tens; EXIF, ICC and
extended XMP split in 64 KB segments make at most 20 MiB / 64 KiB = 320."""

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
# Markers without a length field: TEM and the restart markers RST0-7.
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers (SOF0-15 without DHT C4, JPG C8, DAC CC); progressive: C2 C6 CA CE.
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# Inside entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), by a restart marker
# (D0-D7) or by 0xFF (fill): anything else is the marker that ends the scan.
_END_OF_SCAN: Final = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_NEXT_MARKER: Final = re.compile(rb"\xff[^\x00\xff]")

MSG_TOO_MANY_SCANS: Final = "That image is too complex to decode (it has more than {limit} scans)."
MSG_TOO_MANY_SEGMENTS: Final = (
    "That image is too complex to decode (more than {limit} metadata blocks)."
)
MSG_TWO_FRAMES: Final = "That image is damaged (it has more than one frame header)."
MSG_BAD_LENGTH: Final = "That image is damaged (a header block has an invalid length)."


@dataclass(frozen=True, slots=True)
class JpegStructure:
    """What the markers of a JPEG say (up to its first EOI)."""

    scans: int  # SOS markers
    segments: int  # marker segments other than scans
    progressive: bool  # the frame header is a progressive one (SOF2, 6, 10 or 14)
    complete: bool  # an EOI marker was reached
    frame: int | None = None  # the frame header's marker (0xC0: baseline, ...), if any


def check_jpeg_markers(
    data: bytes | bytearray,
    *,
    max_scans: int = MAX_SCANS,
    max_segments: int = MAX_SEGMENTS,
) -> JpegStructure:
    """Walk the markers of the JPEG ``data`` and reject scan bombs and marker abuse.

    Args:
        data: the whole encoded file (it must start with SOI, ``FF D8``).
        max_scans: most SOS markers accepted.
        max_segments: most other marker segments accepted.

    Returns:
        The counts, for a file that passed (a truncated file passes: the decoder rejects it).

    Raises:
        ImageTooComplex: more than ``max_scans`` scans or ``max_segments`` segments.
        CorruptImage: two frame headers, or a segment length below 2.
    """
    if data[:2] != b"\xff\xd8":
        raise CorruptImage("That image is damaged (it does not start like a JPEG).")
    size = len(data)
    pos, scans, segments, frame, progressive = 2, 0, 0, None, False
    while True:
        found = _NEXT_MARKER.search(data, pos)  # skips fill bytes and stray garbage
        if found is None:
            return JpegStructure(scans, segments, progressive, False, frame)
        marker, pos = data[found.start() + 1], found.end()
        if marker == _EOI:
            return JpegStructure(scans, segments, progressive, True, frame)
        if marker in _STANDALONE or marker == _SOI:
            continue
        if pos + 2 > size:
            return JpegStructure(scans, segments, progressive, False, frame)
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise CorruptImage(MSG_BAD_LENGTH)
        pos += length
        if marker == _SOS:
            scans += 1
            if scans > max_scans:
                raise ImageTooComplex(MSG_TOO_MANY_SCANS.format(limit=max_scans))
            end = _END_OF_SCAN.search(data, pos)
            pos = end.start() if end is not None else size
            continue
        segments += 1
        if segments > max_segments:
            raise ImageTooComplex(MSG_TOO_MANY_SEGMENTS.format(limit=max_segments))
        if marker in _SOF:
            if frame is not None:
                raise CorruptImage(MSG_TWO_FRAMES)
            frame, progressive = marker, marker in _PROGRESSIVE_SOF
