"""A time budget for one image decode, enforced between the chunks Pillow feeds its decoder.

Pillow's ``ImageFile.load`` reads the encoded data from its file object in blocks of
``decodermaxblock`` bytes and hands each block to the C decoder (libjpeg, zlib, ...), which
returns after consuming it. :class:`DeadlineReader` is that file object: its ``read``
raises :class:`~provider.errors.ImageTooComplex` once the decoding thread has used more
than its CPU-time budget, so a decode that would take minutes stops after about
``budget_s`` plus the cost of one block (blocks are :data:`BLOCK_BYTES` small).

CPU time of the decoding thread, not wall time, is measured: on a loaded machine (or with
several images decoding in parallel threads) an innocent image is not rejected because it
waited for a core. This is the second line of defence, behind
:func:`provider.jpeg_markers.check_jpeg_markers`; a C decoder that never returns from one
block is only stopped by killing its process (the local backend's per-batch deadline).
"""

from __future__ import annotations

import io
import time
from typing import Final

from provider.errors import ImageTooComplex

__all__ = ["BLOCK_BYTES", "DEFAULT_DECODE_BUDGET_S", "DeadlineReader"]

DEFAULT_DECODE_BUDGET_S: Final = 1.5
"""CPU seconds one image may take to decode. A legitimate 40-megapixel JPEG (progressive
or not) decodes in about 0.4-0.5 s on the development machine, a 40-megapixel PNG in ~1 s."""

BLOCK_BYTES: Final = 16 * 1024
"""Bytes handed to the C decoder at a time (Pillow's default is 64 KB)."""

MSG_TOO_SLOW: Final = "That image is too complex to decode (it takes more than {budget:g} s)."


class DeadlineReader(io.BytesIO):
    """In-memory file whose reads fail once the calling thread exceeds its CPU-time budget.

    The clock starts when the reader is created, so header parsing counts too.
    """

    def __init__(self, data: bytes | bytearray, budget_s: float | None) -> None:
        super().__init__(data)
        self._budget_s = budget_s
        self._deadline = None if budget_s is None else time.thread_time() + budget_s

    def read(self, size: int | None = -1, /) -> bytes:
        if self._deadline is not None and time.thread_time() > self._deadline:
            raise ImageTooComplex(MSG_TOO_SLOW.format(budget=self._budget_s))
        return super().read(size)
