"""The requestor's copies of servers' heads, read from their files to ship to providers.

A head is read once (in a thread), verified without unpickling
(:func:`provider.artifact.verify_artifact_bytes`: checksum and content-derived id), and
kept in an LRU bounded in bytes, so a busy server's head is not read from disk per request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from golem_backend.base import BackendUnavailable, ModelRef
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.heads import check_head_file
from provider.artifact import verify_artifact_bytes
from provider.errors import ModelError


class HeadShelf:
    """Verified head artifacts by model id, least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._heads: OrderedDict[str, ModelArtifact] = OrderedDict()
        self.bytes = 0
        self.reads = 0

    async def get(self, ref: ModelRef) -> ModelArtifact:
        """The head ``ref`` names; raises :class:`BackendUnavailable` with a clear message
        when its file is missing, unreadable, corrupt or holds another model."""
        head = self._heads.get(ref.model_id)
        if head is not None:
            self._heads.move_to_end(ref.model_id)
            return head
        check_head_file(ref)
        try:
            data = await asyncio.to_thread(ref.path.read_bytes)
            meta = await asyncio.to_thread(verify_artifact_bytes, data, ref.path.name)
        except OSError as exc:
            raise BackendUnavailable(
                f"The model {ref.model_id} cannot be read ({exc.strerror or exc})."
            ) from exc
        except ModelError as exc:
            raise BackendUnavailable(
                f"The model {ref.model_id} cannot be used: {exc.message}"
            ) from exc
        if meta["model_id"] != ref.model_id:
            raise BackendUnavailable(
                f"The model {ref.model_id} cannot be used: {ref.path.name} holds model "
                f"{meta['model_id']}, not {ref.model_id}."
            )
        named = meta.get("shared")
        shared = named.get("key") if isinstance(named, dict) else None
        head = ModelArtifact(
            data=data,
            model_id=ref.model_id,
            labels=tuple(meta["labels"]),
            shared=shared if isinstance(shared, str) else None,
        )
        self.reads += 1
        self._heads[ref.model_id] = head
        self.bytes += len(data)
        while self.bytes > self.max_bytes and len(self._heads) > 1:
            _, dropped = self._heads.popitem(last=False)
            self.bytes -= len(dropped.data)
        return head


def check_shared_vectors(head: ModelArtifact, default: ModelArtifact) -> None:
    """Refuse, before any upload, a head naming shared vectors that the instances do not
    hold: they attach the ones of the default model they serve (``default.provides``)."""
    if head.shared is not None and head.shared != default.provides:
        raise BackendUnavailable(
            f"The model {head.model_id} was trained beside another default dataset (or "
            "feature extractor) than the one the Golem providers serve; retrain it."
        )
