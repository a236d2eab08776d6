"""The image classifier: features, training, model artifacts and prediction.

This package runs inside a Golem provider's VM and, in-process, behind the local
backend. It never imports ``bot`` or ``yapapi``.
"""

from provider.errors import (
    ClassifierError,
    CorruptImage,
    DatasetError,
    EmptyImage,
    ImageError,
    ImageTooComplex,
    ImageTooLarge,
    ModelError,
    NotAnImage,
)
from provider.results import LabelScore, Prediction

__all__ = [
    "ClassifierError",
    "CorruptImage",
    "DatasetError",
    "EmptyImage",
    "ImageError",
    "ImageTooComplex",
    "ImageTooLarge",
    "LabelScore",
    "ModelError",
    "NotAnImage",
    "Prediction",
]
