"""The identity the database and the data folder share, so that neither is used with the
other's stranger.

A random UUID is written at the first start of an installation (or the first start of this
version on an existing one) in the database (``meta`` row ``data_identity``) and in the
data folder (``DATA_DIR/data-identity``). A start that finds two different identities
refuses (``bot.db.repair``): the database belongs to another data folder. When only one
side has one (a crash between the two writes, a new shard's empty folder, a database
copied with ``python -m bot db copy``) it is copied to the other side, provided the
database and the files agree.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from bot.db import files
from bot.db.schema import MetaRow, utcnow

if TYPE_CHECKING:
    from bot.db.store import Store

IDENTITY_KEY = "data_identity"
IDENTITY_FILE = "data-identity"
#: what an identity file that cannot be read counts as (never equal to a real identity)
UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Identities:
    database: str | None
    folder: str | None

    @property
    def conflict(self) -> bool:
        return None not in (self.database, self.folder) and self.database != self.folder

    @property
    def agreed(self) -> str | None:
        """The identity both sides should carry: the database's, else the folder's."""
        if self.database is not None:
            return self.database
        return self.folder if self.folder != UNREADABLE else None


def identity_path(data_dir: Path) -> Path:
    return data_dir / IDENTITY_FILE


def read_folder_identity(data_dir: Path) -> str | None:
    """The folder's identity; ``None`` if it has none, :data:`UNREADABLE` if the file is
    there but is not one."""
    path = identity_path(data_dir)
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return UNREADABLE
    try:
        value = json.loads(raw)["identity"]
        return str(uuid.UUID(str(value)))
    except (ValueError, KeyError, TypeError):
        return UNREADABLE


def write_folder_identity(data_dir: Path, identity: str) -> None:
    text = json.dumps(
        {
            "identity": identity,
            "written_at": utcnow().isoformat(timespec="seconds"),
            "about": "Written by the bot: the database with this identity (table meta, "
            "key data_identity) belongs to this data folder. See docs/operating.md.",
        },
        indent=1,
    )
    files.write_atomic(identity_path(data_dir), text.encode() + b"\n")


async def read_database_identity(store: Store) -> str | None:
    async with store.sessions() as s:
        row = await s.get(MetaRow, IDENTITY_KEY)
        return row.value if row is not None else None


async def read_identities(store: Store) -> Identities:
    folder = await asyncio.to_thread(read_folder_identity, store.data_dir)
    return Identities(await read_database_identity(store), folder)


async def settle_identity(store: Store, found: Identities) -> str:
    """Give both sides the same identity: the database's, else the folder's, else a new
    one (written to the database first: with several processes starting at once the first
    insert wins, and every process then writes that one to the folder)."""
    identity = found.agreed or str(uuid.uuid4())
    if found.database is None:
        try:
            async with store.sessions() as s, s.begin():
                s.add(MetaRow(key=IDENTITY_KEY, value=identity))
        except IntegrityError:  # another process was first
            identity = await read_database_identity(store) or identity
    if await asyncio.to_thread(read_folder_identity, store.data_dir) != identity:
        await asyncio.to_thread(write_folder_identity, store.data_dir, identity)
    return identity
