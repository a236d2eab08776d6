"""The requestor's shelf of heads: what it reads from a head's header about the default
labels' shared open-set vectors, and the check made before any upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_backend import BackendUnavailable, ModelRef
from golem_backend.golem.heads import HeadShelf, check_shared_vectors
from golem_backend.golem.model_file import provided_key
from golem_backend.golem.model_store import ModelArtifact
from provider.artifact import save_model
from provider.features import get_extractor


def head_file(path: Path, **extra: object) -> ModelRef:
    ext = get_extractor("cnn")
    meta = {
        "labels": ["daisy", "rose"],
        "extractor": {"name": ext.name, "version": ext.version, "dim": ext.dim},
        **extra,
    }
    artifact = save_model({"fitted": True}, None, meta, path)
    return ModelRef(artifact.model_id, path)


@pytest.mark.asyncio
async def test_the_shared_key_is_read_from_the_header_and_a_malformed_one_is_none(tmp_path):
    shelf = HeadShelf(1 << 20)
    named = await shelf.get(head_file(tmp_path / "a.model", shared={"key": "fp.cnn@1.w0.5"}))
    assert named.shared == "fp.cnn@1.w0.5"
    for i, odd in enumerate(([1], "fp", {"key": 5}, None)):
        head = await shelf.get(head_file(tmp_path / f"odd{i}.model", shared=odd))
        assert head.shared is None


def test_a_head_is_checked_against_the_default_model_the_instances_serve(tmp_path):
    default_ref = head_file(tmp_path / "default.model", ood={"provides": "fp.cnn@1.w0.5"})
    data = default_ref.path.read_bytes()
    assert provided_key(data) == "fp.cnn@1.w0.5"
    assert provided_key(b"not a model") is None
    default = ModelArtifact(data, default_ref.model_id, ("a", "b"), provides=provided_key(data))
    check_shared_vectors(ModelArtifact(b"", "h1", ("x",), shared="fp.cnn@1.w0.5"), default)
    check_shared_vectors(ModelArtifact(b"", "h2", ("x",)), default)  # names nothing
    with pytest.raises(BackendUnavailable, match="h3 was trained beside another default"):
        check_shared_vectors(ModelArtifact(b"", "h3", ("x",), shared="other.cnn@1.w0.5"), default)
