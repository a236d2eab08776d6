"""Servers' heads as both backends see them: the checks and errors of a :class:`ModelRef`."""

from __future__ import annotations

from pathlib import Path

from golem_backend.base import BackendUnavailable, ModelRef
from provider.artifact import check_compatible, read_header
from provider.errors import ModelError


def check_head_file(model: ModelRef) -> None:
    """Refuse at once a head whose file is not there (the worker verifies its content).

    Raises :class:`BackendUnavailable` with a message that names the model.
    """
    try:
        present = model.path.is_file()
    except OSError:  # e.g. a path too long for the file system
        present = False
    if not present:
        raise BackendUnavailable(
            f"The model {model.model_id} is missing (no file at {model.path}); "
            "retrain it or roll back to another one."
        )


def unusable_head(head: tuple[str, str] | None, error: ModelError) -> BackendUnavailable:
    """The error of a request whose head failed to load or verify."""
    model_id = head[0] if head is not None else "?"
    return BackendUnavailable(f"The model {model_id} cannot be used: {error.message}")


def model_incompatibility(path: Path) -> str | None:
    """Why this version cannot use the model file at ``path`` (read from its header only:
    trained on features or with a scikit-learn this version does not provide, e.g. after an
    upgrade), or ``None`` when it can. A file that is missing or not a model at all is also
    ``None``: classifying reports those. Reads a few KB; blocking."""
    try:
        meta, _ = read_header(path)
    except ModelError:
        return None
    try:
        check_compatible(meta, path.name)
    except ModelError as exc:
        return exc.message
    return None
