"""Models shipped inside the package (``zoo/<model_id>/model.tflite`` + ``model.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sciot_mqtt.models.errors import ModelError

__all__ = ["ZOO_DIR", "zoo_metadata", "zoo_model_ids", "zoo_model_path"]

ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def zoo_model_ids() -> list[str]:
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "model.tflite").is_file())


def zoo_model_path(model_id: str = "fomo96") -> Path:
    """Path of a shipped int8 model, e.g. ``zoo_model_path("fomo96")``."""
    path = ZOO_DIR / model_id / "model.tflite"
    if "/" in model_id or "\\" in model_id or not path.is_file():
        raise ModelError(f"no zoo model {model_id!r}; available: {zoo_model_ids()}")
    return path


def zoo_metadata(model_id: str = "fomo96") -> dict[str, Any]:
    meta = zoo_model_path(model_id).with_suffix(".json")
    data: dict[str, Any] = json.loads(meta.read_text()) if meta.is_file() else {}
    return data
