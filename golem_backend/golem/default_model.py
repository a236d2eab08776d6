"""The default model the Golem requestor holds: loaded at start, trained when missing.

The requestor trains here, in a child process (the local backend's ``TrainingRun``), and
uploads the artifact to every instance, so Golem serves exactly the model the local backend
would, and a retrain needs no new VM image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golem_backend.base import ProgressCallback
from golem_backend.golem.model_file import describe_model, load_artifact
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.processes import LOAD_TIMEOUT_S, worker_context
from golem_backend.settings import BackendSettings
from golem_backend.training import (
    TrainingFailed,
    TrainingRun,
    default_dataset_dir,
    training_failure,
)
from provider.errors import ModelError

logger = logging.getLogger(__name__)

#: Reading the model's id and labels at start (a throw-away process loads the model).
DESCRIBE_TIMEOUT_S = LOAD_TIMEOUT_S


class DefaultModel:
    """Loads and (re)trains the model at ``settings.model_path``; ``shutting_down()`` is
    the message a training cut short by shutdown fails with, or None."""

    def __init__(self, settings: BackendSettings, shutting_down: Callable[[], str | None]) -> None:
        self._settings = settings
        self._shutting_down = shutting_down
        self.accuracy: float | None = None
        self.training: TrainingRun | None = None

    async def load(self, progress: ProgressCallback | None) -> ModelArtifact:
        """The model at ``settings.model_path``; trains the default one if missing/unusable."""
        path = self._settings.model_path
        if path.exists():
            try:
                info = await describe_model(path, DESCRIBE_TIMEOUT_S)
            except ModelError as exc:
                logger.error("the model file %s is unusable (%s); training a new one", path, exc)
            else:
                self.accuracy = info["accuracy"]
                return await load_artifact(path, info)
        else:
            logger.info("no model at %s; training the default model first", path)
        summary = await self.train(None, progress, serving=False)
        return await load_artifact(path, summary)

    async def reload(self) -> ModelArtifact:
        """The model now at ``settings.model_path`` (retrained elsewhere)."""
        path = self._settings.model_path
        return await load_artifact(path, await describe_model(path, DESCRIBE_TIMEOUT_S))

    async def train(
        self, dataset: Path | None, progress: ProgressCallback | None, *, serving: bool
    ) -> dict[str, Any]:
        source = Path(dataset) if dataset else default_dataset_dir(self._settings)
        self.training = TrainingRun(
            worker_context(),
            source,
            self._settings.model_path,
            self._settings.cache_path,
            threads=None,  # the classifier runs on providers: training may use every core
            niceness=5 if serving else 0,
        )
        try:
            summary = await self.training.run(progress)
        except TrainingFailed as exc:
            stopped = self._shutting_down()
            raise training_failure(exc, serving=serving, shutting_down=stopped) from None
        finally:
            self.training = None
        summary["dataset"] = source
        self.accuracy = summary["accuracy"]
        return summary

    async def kill(self) -> None:
        if self.training is not None:
            await self.training.kill()
