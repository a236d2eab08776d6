"""The files one exe-script moves, and their clean-up on the requestor's disk.

yapapi 0.13.1 leaves files behind in a long-running requestor:

* ``upload_bytes`` writes each image to a temporary file that gftp publishes; the file is
  released (unpublished and deleted) only by the command's ``after()`` hook, which yapapi
  runs only when the whole script succeeded. A failed or timed-out batch leaves its
  images on disk, published, until the engine stops. Each such file also stays registered
  in the storage provider's exit stack until then (memory growing with every image).
* ``download_bytes`` receives into a temporary file of the engine that is deleted only when
  the engine stops (one file per batch), and its ``limit`` applies when the file is read,
  after gftp has written all of it.

:class:`ScriptFiles` keeps the books of one script instead: every uploaded source is
released once the script has ended, however it ended. Uploads are written to files of our
own (in ``transfer_dir``, a private folder) and published with ``upload_file``, so the
storage provider registers nothing it keeps; they are deleted with the release. Every
reply is received into a file of ours too (gftp writes straight to it), read with a size
limit and deleted, on success or failure. While the script runs, :meth:`ScriptFiles.guard`
watches the replies being received and truncates one that grows past its limit: gftp
writes the file itself and yapapi offers no hook into that, so disk use is bounded by the
limit plus what arrives within one ``GUARD_INTERVAL_S``, not by the reply's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from yapapi.script import Script
from yapapi.script.command import DownloadFile, SendFile
from yapapi.storage import Source, StorageProvider

logger = logging.getLogger(__name__)

GUARD_INTERVAL_S = 0.01


class _Upload(SendFile):
    """yapapi's ``SendFile`` of bytes written to a file of ours just before the upload;
    the source is released and the file deleted by :meth:`ScriptFiles.release`."""

    def __init__(self, data: bytes, dst_path: str, files: ScriptFiles) -> None:
        path = files.transfer_dir / f"upload-{uuid.uuid4().hex}"
        super().__init__(str(path), dst_path)
        self._data: bytes | None = data
        self._path = path
        self._files = files

    async def _do_upload(self, storage: StorageProvider) -> Source:
        data, self._data = self._data, None
        assert data is not None, "uploaded once"
        self._files.uploads.append(self._path)
        await asyncio.to_thread(self._path.write_bytes, data)
        source = await storage.upload_file(self._path)
        self._files.sources.append((storage, source))
        return source

    async def after(self) -> None:
        pass  # released by ScriptFiles.release(), once, whatever the script's outcome


@dataclass(eq=False)
class Reply:
    """A file downloaded from the provider into ``path`` (ours), of at most ``limit`` bytes."""

    path: Path
    limit: int
    oversized: bool = False  # the guard saw it grow past the limit and truncated it

    def read(self) -> bytes | None:
        """At most ``limit`` bytes of the reply (None if nothing arrived); deletes the file."""
        try:
            with self.path.open("rb") as fh:
                data = fh.read(self.limit)
        except FileNotFoundError:
            return None
        finally:
            self.path.unlink(missing_ok=True)
        return b"\0" * self.limit if self.oversized else data  # too large: rejected as such


@dataclass(eq=False)
class ScriptFiles:
    """Uploads and downloads of one script; :meth:`release` after it ends (see module)."""

    transfer_dir: Path
    sources: list[tuple[StorageProvider, Source]] = field(default_factory=list)
    uploads: list[Path] = field(default_factory=list)  # our files behind the sources
    replies: list[Reply] = field(default_factory=list)

    def upload(self, script: Script, data: bytes, dst: str) -> None:
        script.add(_Upload(data, dst, self))

    def download(self, script: Script, src: str, limit: int) -> Reply:
        reply = Reply(self.transfer_dir / f"reply-{uuid.uuid4().hex}", limit)
        script.add(DownloadFile(src, str(reply.path)))  # gftp receives into reply.path
        self.replies.append(reply)
        return reply

    async def guard(self) -> None:
        """Until cancelled: truncate any reply that grows past its limit while it arrives."""
        while True:
            for reply in self.replies:
                with contextlib.suppress(OSError):
                    if reply.path.stat().st_size > reply.limit:
                        os.truncate(reply.path, 0)  # gftp may go on writing: watch it again
                        if not reply.oversized:
                            logger.warning("a provider's reply exceeded %d bytes", reply.limit)
                        reply.oversized = True
            await asyncio.sleep(GUARD_INTERVAL_S)

    async def release(self) -> None:
        """Unpublish every uploaded source; delete its file and every reply file."""
        sources, self.sources = self.sources, []
        for storage, source in sources:
            try:
                await storage.release_source(source)
            except Exception as exc:  # never let clean-up hide the script's own outcome
                logger.warning("could not release an uploaded file: %s", exc)
        for path in [*self.uploads, *(reply.path for reply in self.replies)]:
            path.unlink(missing_ok=True)
        self.uploads = []
