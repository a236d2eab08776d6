"""The exe-script of one micro-batch, and the books of the servers' heads an instance holds.

One script per batch: [model update] + [head uploads and removals] + image uploads + the
stdlib-only client (``provider.serve client``) + the reply download. When the model was
retrained, the script first uploads the new artifact and reloads it. A batch names, per
image, the head that answers it (None: the uploaded model); a head the instance lacks is
uploaded first, to ``/golem/work/<model id>.model`` (content-addressed: at most once per
instance while it stays); the instance keeps the ``head_files`` most recently used ones and
removes the oldest beyond that. The reply is checked against each head's own labels.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from yapapi.script import Script

from golem_backend.base import Outcome
from golem_backend.golem import layout
from golem_backend.golem.batch import ClassifyBatch
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.golem.protocol import (
    check_model,
    load_reply,
    parse_classify_reply,
    reply_limit,
)
from golem_backend.golem.transfers import ScriptFiles

if TYPE_CHECKING:
    from golem_backend.golem.service import ClassifierService

logger = logging.getLogger(__name__)


class HeadFiles:
    """Which servers' heads are on one instance's disk (least recently used first)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.files: OrderedDict[str, None] = OrderedDict()
        self.uploads: Counter[str] = Counter()  # uploads per head id (for operators)

    def plan(
        self, script: Script, files: ScriptFiles, heads: list[ModelArtifact | None]
    ) -> tuple[list[ModelArtifact], list[str]]:
        """Add to ``script`` the uploads of the heads this instance lacks, and the removal
        of the least recently used ones beyond ``keep``; returns both lists."""
        needed = {h.model_id: h for h in heads if h is not None}
        uploads = [h for model_id, h in needed.items() if model_id not in self.files]
        for head in uploads:
            files.upload(script, head.data, layout.head_path(head.model_id))
        kept = [m for m in self.files if m not in needed] + list(needed)
        excess = max(0, len(kept) - max(self.keep, len(needed)))
        removals = kept[:excess]
        for model_id in removals:
            script.run("/bin/rm", "-f", layout.head_path(model_id))
        return uploads, removals

    def done(
        self, heads: list[ModelArtifact | None], uploads: list[ModelArtifact], removals: list[str]
    ) -> None:
        """The script ran: record what is on the provider now (most recently used last)."""
        for head in uploads:
            self.uploads[head.model_id] += 1
        for head in heads:
            if head is not None:
                self.files[head.model_id] = None
                self.files.move_to_end(head.model_id)
        for model_id in removals:
            self.files.pop(model_id, None)


def batch_script(
    svc: ClassifierService, batch: ClassifyBatch, files: ScriptFiles
) -> tuple[Script, Callable[[], list[Outcome]]]:
    """``batch``'s script for ``svc`` and the function that parses its reply once it ran."""
    cfg = svc.config
    script = svc.new_script(cfg.script_timeout_s)
    artifact = cfg.store.current
    reload_reply = None
    if artifact.model_id != svc.model_id:
        path = layout.model_update_path(artifact.model_id)
        files.upload(script, artifact.data, path)
        script.run(
            *svc.serve("reload", "--socket", layout.SOCKET_PATH, "--model", path),
            "--out",
            layout.RELOAD_PATH,
        )
        reload_reply = files.download(script, layout.RELOAD_PATH, reply_limit(0))

    heads = batch.heads if any(h is not None for h in batch.heads) else []
    uploads, removals = svc.heads.plan(script, files, heads)
    reply = None
    if batch.images:
        inputs = [f"{layout.INPUT_DIR}/{batch.batch_id}-{i}" for i in range(len(batch.images))]
        for data, dst in zip(batch.images, inputs, strict=True):
            files.upload(script, data, dst)
        out = f"{layout.OUTPUT_DIR}/{batch.batch_id}.json"
        names = ",".join(h.model_id if h is not None else "-" for h in heads)
        script.run(
            *svc.serve("client", "--socket", layout.SOCKET_PATH),
            *("--top-k", str(batch.top_k), "--max-pixels", str(cfg.max_pixels)),
            *("--timeout", str(int(cfg.script_timeout_s) + 1), "--cleanup", "--out", out),
            *((f"--heads={names}",) if heads else ()),  # "=": names may start with "-"
            *inputs,
        )
        reply = files.download(script, out, reply_limit(len(batch.images)))

    def parse() -> list[Outcome]:
        if reload_reply is not None:
            check_model(
                load_reply(reload_reply.read(), reply_limit(0)),
                artifact.model_id,
                artifact.labels,
            )
            svc.model_id = artifact.model_id
            logger.info("%s now serves model %s", svc.name, artifact.model_id)
        svc.heads.done(heads, uploads, removals)
        if reply is None:
            return []
        return parse_classify_reply(
            reply.read(),
            n_images=len(batch.images),
            top_k=batch.top_k,
            model_id=artifact.model_id,
            labels=artifact.labels,
            heads=[(h.model_id, h.labels) if h else None for h in heads] if heads else None,
        )

    return script, parse
