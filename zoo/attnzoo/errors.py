"""Errors the zoo raises. Each names the constraint that failed and how to get past it."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every attnzoo error."""


class UnknownModelError(ZooError, KeyError):
    """No registered model has this name or alias."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsUnavailableError(ZooError):
    """The weights could not be fetched (Hub unreachable, offline and not cached, no entry)."""


class HashMismatchError(ZooError):
    """A weight file's sha256 is not the one its entry pins."""


class CorruptWeightsError(ZooError):
    """A weight file cannot be read: truncated, not safetensors, or not a checkpoint."""


class StateDictMismatchError(ZooError):
    """The weights do not fit the model: missing, unexpected or mis-shaped tensors."""

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


class ConverterError(ZooError):
    """No converter is registered for a family, or the converter failed."""
