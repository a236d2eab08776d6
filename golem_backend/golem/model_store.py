"""The model artifact the requestor holds and uploads, and the store every instance reads."""

from __future__ import annotations

from dataclasses import dataclass

from golem_backend.golem.canaries import CanarySet


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    """A trained model file held by the requestor: its bytes, id and labels, and the key of
    the shared open-set vectors it names (a head keeping the default labels) or provides
    (the default model), from its header (:mod:`provider.shared_vectors`)."""

    data: bytes
    model_id: str
    labels: tuple[str, ...]
    shared: str | None = None
    provides: str | None = None


class ModelStore:
    """The model every instance should serve; swapped by retrain, read by each instance.

    ``canaries``: images of known answer for the current model (:mod:`.canaries`), or None.
    """

    def __init__(self, artifact: ModelArtifact) -> None:
        self.current = artifact
        self.canaries: CanarySet | None = None
