"""Where classification happens: one async ``Backend`` interface, two implementations.

``LocalBackend`` (the default) runs the classifier in worker processes on this machine;
``GolemBackend`` runs it on providers of the Golem Network. The bot only sees this package.
"""

from golem_backend.base import (
    Backend,
    BackendBusy,
    BackendError,
    BackendStatus,
    BackendTimeout,
    BackendUnavailable,
    CostSummary,
    Example,
    InstanceInfo,
    ModelRef,
    Outcome,
    ProgressCallback,
    ScalingDecision,
    TrainingSet,
    TrainReport,
)
from golem_backend.factory import create_backend, default_dataset
from golem_backend.heads import model_incompatibility
from golem_backend.throughput import Capacity
from provider.errors import CorruptImage, EmptyImage, ImageError, ImageTooLarge, NotAnImage
from provider.imageio import sniff_format
from provider.results import UNKNOWN, LabelScore, Prediction

__all__ = [
    "UNKNOWN",
    "Backend",
    "BackendBusy",
    "BackendError",
    "BackendStatus",
    "BackendTimeout",
    "BackendUnavailable",
    "Capacity",
    "CorruptImage",
    "CostSummary",
    "EmptyImage",
    "Example",
    "ImageError",
    "ImageTooLarge",
    "InstanceInfo",
    "LabelScore",
    "ModelRef",
    "NotAnImage",
    "Outcome",
    "Prediction",
    "ProgressCallback",
    "ScalingDecision",
    "TrainReport",
    "TrainingSet",
    "create_backend",
    "default_dataset",
    "model_incompatibility",
    "sniff_format",
]
