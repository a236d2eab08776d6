"""A yapapi StorageProvider on the local file system: ``file://`` URLs instead of gftp.

It keeps files as yapapi's ``GftpProvider`` does: an upload is a file under ``root`` until
its source is released; a download goes to the ``destination_file`` asked for when it does
not exist yet, else to a new file under ``root`` that stays until the engine stops.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from yapapi.storage import Content, Destination, Source, StorageProvider

_CHUNK = 65536


class _FileSource(Source):
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def download_url(self) -> str:
        return self.path.as_uri()

    async def content_length(self) -> int:
        return self.path.stat().st_size


class _FileDestination(Destination):
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def upload_url(self) -> str:
        return self.path.as_uri()

    async def download_file(self, destination_file: os.PathLike) -> None:
        if Path(destination_file) != self.path:  # gftp received it there already
            await super().download_file(destination_file)

    async def download_stream(self) -> Content:
        data = self.path.read_bytes() if self.path.exists() else b""

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), _CHUNK):
                yield data[start : start + _CHUNK]

        return Content(len(data), chunks())


class LocalStorageProvider(StorageProvider):
    """Uploads become files under ``root``; downloads are read from files the exe-unit wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _new_path(self) -> Path:
        return self.root / uuid.uuid4().hex

    async def upload_stream(self, length: int, stream: AsyncIterator[bytes]) -> Source:
        path = self._new_path()
        with path.open("wb") as fh:
            async for chunk in stream:
                fh.write(chunk)
        return _FileSource(path)

    async def release_source(self, source: Source) -> None:
        if isinstance(source, _FileSource):
            source.path.unlink(missing_ok=True)

    async def new_destination(self, destination_file: os.PathLike | None = None) -> Destination:
        if destination_file is not None and not Path(destination_file).exists():  # noqa: ASYNC240
            return _FileDestination(Path(destination_file))
        path = self._new_path()
        path.touch()  # gftp's temporary file exists from the start
        return _FileDestination(path)
