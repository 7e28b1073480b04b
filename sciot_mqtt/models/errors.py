"""Errors of the models subpackage."""

from __future__ import annotations

from sciot_mqtt.errors import SciotError

__all__ = ["ModelError", "UnsupportedModelError"]


class ModelError(SciotError):
    """A model file is missing, unreadable, or cannot be prepared or run."""


class UnsupportedModelError(ModelError):
    """The model is valid but uses something the splitter cannot cut correctly."""
