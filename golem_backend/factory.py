"""Pick the backend the settings ask for; imports each implementation only when chosen."""

from __future__ import annotations

from pathlib import Path

from golem_backend.base import Backend, ProgressCallback
from golem_backend.settings import BackendSettings


def create_backend(
    settings: BackendSettings, *, progress: ProgressCallback | None = None
) -> Backend:
    """A new, not yet started backend of kind ``settings.backend`` ("local" or "golem");
    Golem with ``GOLEM_FALLBACK=local`` is a :class:`~golem_backend.fallback.FallbackBackend`.

    ``progress`` receives the training progress if ``start()`` has to train a model first.
    """
    if settings.backend == "local":
        from golem_backend.local.backend import LocalBackend

        return LocalBackend(settings, progress=progress)
    if settings.backend == "golem":
        from golem_backend.golem.backend import GolemBackend  # pulls in yapapi: only when used

        if settings.golem_fallback == "local":
            from golem_backend.fallback import FallbackBackend
            from golem_backend.local.backend import LocalBackend

            return FallbackBackend(
                lambda: GolemBackend(settings),
                LocalBackend(settings, progress=progress),
                reconnect_s=settings.golem_reconnect_s,
            )
        return GolemBackend(settings, progress=progress)
    raise ValueError(f"unknown backend {settings.backend!r}; expected 'local' or 'golem'")


def default_dataset() -> Path:
    """The training dataset shipped with the package (the compact FLOWERS17 copy)."""
    from provider.train import default_dataset as provider_default_dataset

    return Path(provider_default_dataset())
