"""Typed errors of the classifier. Each carries a stable ``code`` and the message a user sees."""

from __future__ import annotations


class ClassifierError(Exception):
    """Base of every error the classifier raises on purpose.

    ``code`` is stable and machine-readable (it travels in JSON between the provider and
    the requestor); ``str(error)`` is a short sentence fit to show to an end user.
    """

    code: str = "classifier_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ImageError(ClassifierError):
    """The input is not an image we are willing to classify."""

    code = "image_error"


class EmptyImage(ImageError):
    code = "empty"


class NotAnImage(ImageError):
    code = "not_an_image"


class UnreadableFile(NotAnImage):
    """A path that does not exist, is not a regular file, or cannot be read."""

    code = "unreadable"


class CorruptImage(ImageError):
    """Truncated or otherwise undecodable image data."""

    code = "corrupt"


class ImageTooLarge(ImageError):
    """Too many bytes or too many pixels (decompression bomb guard)."""

    code = "too_large"


class ImageTooComplex(ImageTooLarge):
    """Small but too costly to decode: a JPEG scan bomb, or a decode over its time budget."""

    code = "too_complex"


class ModelError(ClassifierError):
    """A model artifact is missing, corrupted, or does not match this code."""

    code = "model_error"


class DatasetError(ClassifierError):
    """A dataset folder cannot be used for training."""

    code = "dataset_error"


IMAGE_ERRORS: dict[str, type[ImageError]] = {
    cls.code: cls
    for cls in (
        ImageError,
        EmptyImage,
        NotAnImage,
        UnreadableFile,
        CorruptImage,
        ImageTooLarge,
        ImageTooComplex,
    )
}


def image_error_from_json(obj: dict[str, str]) -> ImageError:
    """Rebuild an :class:`ImageError` from its ``to_json()`` form (unknown codes -> ImageError)."""
    cls = IMAGE_ERRORS.get(str(obj.get("code")), ImageError)
    return cls(str(obj.get("message") or "The image could not be classified."))
